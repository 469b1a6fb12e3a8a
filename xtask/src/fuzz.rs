//! `cargo xtask fuzz`: the plugin's cargo-fuzz targets (`plugin/fuzz`), each
//! run for a given time or number of runs, with the runs, the corpus size
//! and the crashes printed per target. Not part of `cargo xtask test`: a
//! useful run takes far longer than the tests.
//!
//! cargo-fuzz needs a nightly toolchain; both are installed when missing.
//! Each target reads its checked-in seeds (`plugin/fuzz/seeds/<target>`)
//! and grows its working corpus (`plugin/fuzz/corpus/<target>`, not in git);
//! a crash lands in `plugin/fuzz/artifacts/<target>`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The targets, in the order they run.
pub const TARGETS: &[&str] = &["caller_number", "oauth_callback", "salesforce_json"];

/// How long each target runs: until the first of the limits given.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Seconds per target.
    pub seconds: Option<u64>,
    /// Runs (inputs executed) per target.
    pub runs: Option<u64>,
}

/// What one target's run did.
struct Outcome {
    runs: u64,
    corpus_files: usize,
    corpus_bytes: u64,
    crashes: usize,
}

/// Run `target` (or every target) for `budget` each; fail when one crashed.
pub fn fuzz(root: &Path, budget: Budget, target: Option<&str>) -> anyhow::Result<()> {
    let targets: Vec<&str> = match target {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => bail!(
            "there is no fuzz target {t:?}: choose one of {}",
            TARGETS.join(", ")
        ),
        None => TARGETS.to_vec(),
    };
    ensure_tools()?;
    let dir = root.join("plugin").join("fuzz");
    let mut crashed = Vec::new();
    let mut lines = Vec::new();
    for target in targets {
        let outcome = run_target(&dir, target, budget)?;
        let line = format!(
            "{target}: {} runs, corpus {} files ({} KiB), {} crashes",
            outcome.runs,
            outcome.corpus_files,
            outcome.corpus_bytes.div_ceil(1024),
            outcome.crashes
        );
        eprintln!("xtask: {line}");
        lines.push(line);
        if outcome.crashes > 0 {
            crashed.push(target);
        }
    }
    println!("{}", lines.join("\n"));
    if !crashed.is_empty() {
        bail!(
            "{} crashed: the inputs are in plugin/fuzz/artifacts/<target>; reproduce with `cargo +nightly fuzz run <target> <file>` in plugin/fuzz",
            crashed.join(", ")
        );
    }
    Ok(())
}

/// Install the nightly toolchain and cargo-fuzz when missing; nothing when
/// both are there.
fn ensure_tools() -> anyhow::Result<()> {
    let toolchains = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("rustup is needed to install the nightly toolchain cargo-fuzz uses")?;
    if !String::from_utf8_lossy(&toolchains.stdout)
        .lines()
        .any(|l| l.starts_with("nightly"))
    {
        crate::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let has_fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_fuzz {
        crate::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

fn run_target(dir: &Path, target: &str, budget: Budget) -> anyhow::Result<Outcome> {
    let corpus = dir.join("corpus").join(target);
    let seeds = dir.join("seeds").join(target);
    let artifacts = dir.join("artifacts").join(target);
    std::fs::create_dir_all(&corpus)
        .with_context(|| format!("cannot create {}", corpus.display()))?;
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("cannot create {}", artifacts.display()))?;
    let crashes_before = crashes(&artifacts);

    let mut limits = Vec::new();
    if let Some(s) = budget.seconds {
        limits.push(format!("-max_total_time={s}"));
    }
    if let Some(r) = budget.runs {
        limits.push(format!("-runs={r}"));
    }
    // Release build without a sanitizer: the plugin is safe Rust, and
    // AddressSanitizer would halve the runs a core gets through.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(dir)
        .args([
            "+nightly",
            "fuzz",
            "run",
            "--release",
            "--sanitizer",
            "none",
        ])
        .arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .args(&limits)
        .arg("-print_final_stats=1");
    // libFuzzer reports on stderr, at length: into a file to follow with
    // `tail -f` and to read the final stats from.
    let log_path = dir.join("target").join(format!("fuzz-{target}.log"));
    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let log_file = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    cmd.stderr(log_file);
    eprintln!(
        "xtask: running {cmd:?}, its output in {}",
        log_path.display()
    );
    let status = cmd
        .status()
        .with_context(|| format!("cannot run cargo fuzz for {target}"))?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    // libFuzzer's own output is long; its last lines say how it ended.
    for line in log
        .lines()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        eprintln!("  {line}");
    }
    let runs = final_stat(&log, "stat::number_of_executed_units");
    let (corpus_files, corpus_bytes) = size_of(&corpus);
    let found = crashes(&artifacts).saturating_sub(crashes_before);
    // A crash libFuzzer reports but could not save still counts.
    let crashes = if status.success() {
        found
    } else {
        found.max(1)
    };
    Ok(Outcome {
        runs: runs.unwrap_or(0),
        corpus_files,
        corpus_bytes,
        crashes,
    })
}

/// A `stat::name: value` line of `-print_final_stats=1`.
fn final_stat(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
}

/// Files and bytes in `dir`.
fn size_of(dir: &Path) -> (usize, u64) {
    files(dir).fold((0, 0), |(n, bytes), f| {
        (n + 1, bytes + f.metadata().map(|m| m.len()).unwrap_or(0))
    })
}

/// Saved crashing inputs (`crash-*`, `oom-*`, `timeout-*`) in `dir`.
fn crashes(dir: &Path) -> usize {
    files(dir)
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                ["crash-", "oom-", "timeout-"]
                    .iter()
                    .any(|k| n.starts_with(k))
            })
        })
        .count()
}

fn files(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_are_read_from_the_end_of_the_log() {
        let log = "INFO: Seed: 1\n#2\tINITED\nDone 12345 runs in 3 second(s)\n\
                   stat::number_of_executed_units: 12345\nstat::new_units_added: 7\n";
        assert_eq!(
            final_stat(log, "stat::number_of_executed_units"),
            Some(12345)
        );
        assert_eq!(final_stat(log, "stat::new_units_added"), Some(7));
        assert_eq!(final_stat(log, "stat::peak_rss_mb"), None);
    }
}
