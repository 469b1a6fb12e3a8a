//! What the CLI prints to the terminal, in one place for two reasons:
//!
//! - A closed pipe (`pbx-host crm users list | head`) is not an error: the
//!   reader took what it wanted. Every line goes through `outln!`/`out!`;
//!   after a broken pipe they print nothing more, and the command goes on to
//!   complete its effect (nothing is left half done: `call simulate` still
//!   sends every event, `crm associate --auto --yes` still saves) and exits
//!   with status 0, without a panic message.
//! - Text that comes from a plugin or the CRM (names, e-mails, messages)
//!   may carry control characters (ESC, CR, BEL, …) that would rewrite the
//!   operator's terminal: [`text`] shows them as visible escapes.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

/// Set once stdout is found closed: later output is dropped.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writing to stdout failed for another reason than a closed pipe (a full
/// disk, an I/O error): the command fails with it.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output: {0}")]
pub struct OutError(io::Error);

/// Write `args` and a newline to stdout (what `outln!` calls).
pub fn write_line(args: fmt::Arguments<'_>) -> Result<(), OutError> {
    write_with(|stdout| {
        stdout.write_fmt(args)?;
        stdout.write_all(b"\n")
    })
}

/// Write `args` to stdout and flush it (a prompt; what `out!` calls).
pub fn write(args: fmt::Arguments<'_>) -> Result<(), OutError> {
    write_with(|stdout| {
        stdout.write_fmt(args)?;
        stdout.flush()
    })
}

fn write_with(
    f: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>,
) -> Result<(), OutError> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    match f(&mut io::stdout().lock()) {
        Ok(()) => Ok(()),
        Err(e) => closed_or_error(e),
    }
}

/// A broken pipe marks stdout closed (and is no error); others are errors.
fn closed_or_error(e: io::Error) -> Result<(), OutError> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
        Ok(())
    } else {
        Err(OutError(e))
    }
}

/// Write `args` and a newline to stderr, ignoring failure: the last word
/// of a command must not panic on a closed stderr either.
pub fn error_line(args: fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_fmt(args);
    let _ = stderr.write_all(b"\n");
}

/// `println!` for the CLI's commands: a closed pipe ends the output, never
/// the command; other write errors are `?`-propagated.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::write_line(format_args!($($arg)*))?
    };
}

/// `print!` and flush, for prompts.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*))?
    };
}

pub(crate) use {out, outln};

/// CRM or plugin text made safe for a terminal: control characters (C0,
/// DEL, C1: ESC, CR, LF, BEL, …) and the bidirectional overrides that
/// reorder what is shown become visible escapes such as `\u{1b}`.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// As [`text`], but keeping line breaks and tabs: for multi-line messages
/// (the CLI's own errors, which may quote CRM text).
pub fn lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// The string at `value` made safe with [`text`], or `default` when it is
/// not a string.
pub fn field<'a>(value: &'a Value, default: &'a str) -> Cow<'a, str> {
    value.as_str().map_or(Cow::Borrowed(default), text)
}

fn escape(s: &str, keep_lines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && !(keep_lines && matches!(c, '\n' | '\t'))) || is_bidi_control(c)
    };
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// The Unicode bidirectional formatting characters (embeddings, overrides,
/// isolates, marks): they make a terminal show text in another order.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A table for the terminal: a header and rows of cells, each column as
/// wide as its widest cell, two spaces apart, the last column unpadded.
/// Cells are text already made safe (`text`, `field`): the table measures
/// what the terminal will show, escapes included.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row; missing cells are empty, extra ones are dropped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    /// The lines to print, header first, without trailing spaces.
    pub fn lines(&self) -> Vec<String> {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        std::iter::once(&self.header)
            .chain(&self.rows)
            .map(|row| {
                let mut line = String::new();
                for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                    if i > 0 {
                        line.push_str("  ");
                    }
                    line.push_str(cell);
                    if i + 1 < row.len() {
                        line.extend(std::iter::repeat_n(' ', w - width(cell)));
                    }
                }
                line.trim_end().to_string()
            })
            .collect()
    }

    /// Print it (through `write_line`: a closed pipe ends it quietly).
    pub fn print(&self) -> Result<(), OutError> {
        for line in self.lines() {
            write_line(format_args!("{line}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_line_up_whatever_the_cell_widths() {
        let mut table = Table::new(&["NUMBER", "NAME", "E-MAIL"]);
        table.row([
            "1001",
            "Ada Lovelace-Byron of a very long name",
            "ada@acme.com",
        ]);
        table.row(["7", "Zoë", "-"]);
        table.row([
            text("1002\u{1b}[2J").into_owned(),
            text("Eve\u{1b}").into_owned(),
        ]);
        let lines = table.lines();
        assert_eq!(lines.len(), 4);
        // Every column starts at the same character position on every line.
        let starts = |line: &str, needle: &str| {
            line.chars().count() - line[line.find(needle).unwrap_or(0)..].chars().count()
        };
        let name_at = starts(&lines[0], "NAME");
        let email_at = starts(&lines[0], "E-MAIL");
        assert_eq!(starts(&lines[1], "Ada"), name_at);
        assert_eq!(starts(&lines[2], "Zoë"), name_at);
        assert_eq!(starts(&lines[3], "Eve"), name_at);
        assert_eq!(starts(&lines[1], "ada@"), email_at);
        assert_eq!(starts(&lines[2], "-"), email_at);
        assert_eq!(
            email_at,
            name_at + "Ada Lovelace-Byron of a very long name".len() + 2
        );
        // CRM text stays escaped; no line ends in padding.
        assert!(
            lines[3].starts_with("1002\\u{1b}[2J  Eve\\u{1b}"),
            "{}",
            lines[3]
        );
        assert!(lines.iter().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(
            text("Eve\u{1b}]0;pwned\u{7}\u{1b}[2J\rAdmin\n"),
            "Eve\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\rAdmin\\n"
        );
        assert_eq!(text("a\u{9b}31mb\u{7f}"), "a\\u{9b}31mb\\u{7f}");
        assert_eq!(text("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
    }

    #[test]
    fn plain_text_is_untouched_and_not_copied() {
        for s in ["Ada Lovelace", "Zoë Ångström <zoe@example.org>", "名前", ""] {
            assert!(matches!(text(s), Cow::Borrowed(b) if b == s));
        }
    }

    #[test]
    fn multi_line_text_keeps_its_lines_but_not_escapes() {
        assert_eq!(lines("one\n\ttwo\u{1b}[1m"), "one\n\ttwo\\u{1b}[1m");
        assert_eq!(lines("a\rb"), "a\\rb");
    }

    #[test]
    fn a_broken_pipe_is_no_error_and_other_write_errors_are() {
        assert!(closed_or_error(io::Error::from(io::ErrorKind::BrokenPipe)).is_ok());
        assert!(closed_or_error(io::Error::from(io::ErrorKind::StorageFull)).is_err());
    }
}
