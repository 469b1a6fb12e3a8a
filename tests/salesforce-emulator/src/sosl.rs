//! A SOSL subset: `FIND {term} [IN ALL|NAME|EMAIL|PHONE FIELDS]
//! [RETURNING Object[(fields [WHERE ...] [ORDER BY ...] [LIMIT n])], ...]
//! [LIMIT n]`, with SOSL's escaping inside the braces (a reserved character
//! left unescaped is `MALFORMED_SEARCH`, as Salesforce documents) and phone
//! matching on the tokens of a phone number (`phone`).

use std::time::Instant;

use crate::error::ApiError;
use crate::phone;
use crate::schema::{FieldType, ObjectSchema};
use crate::soql::{self, Cond, OrderBy, Parser};
use crate::store::{Org, Table};

/// Reserved characters that must be backslash-escaped inside `{...}`.
pub const RESERVED: &str = "&|!(){}[]^\"~*?:\\'+-";

/// The reserved characters that mean something unescaped: `*` and `?`
/// (wildcards), `"` (a phrase), `(` and `)` (grouping). Every other one
/// left unescaped is an error.
const SYNTAX: &str = "*?\"()";

/// Which fields a search looks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Name,
    Email,
    Phone,
}

/// One `RETURNING` item.
#[derive(Debug, Clone, PartialEq)]
pub struct Returning {
    pub object: String,
    pub fields: Vec<String>,
    pub filter: Option<Cond>,
    pub order: Vec<OrderBy>,
    pub limit: Option<usize>,
}

/// A piece of the search term.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub text: String,
    /// Ends with an unescaped `*`: prefix match.
    pub prefix: bool,
}

/// A parsed SOSL search.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// The term with escapes removed.
    pub term: String,
    /// OR-groups of AND-ed words.
    pub groups: Vec<Vec<Word>>,
    pub scope: Scope,
    pub returning: Vec<Returning>,
    pub limit: Option<usize>,
}

fn malformed(msg: impl Into<String>) -> ApiError {
    ApiError::new("MALFORMED_SEARCH", msg)
}

/// Parses a SOSL statement.
pub fn parse(src: &str) -> Result<Search, ApiError> {
    let s = src.trim_start();
    let rest = match s.get(..4) {
        Some(kw) if kw.eq_ignore_ascii_case("FIND") => &s[4..],
        _ => {
            return Err(malformed(format!(
                "unexpected token: '{}'",
                s.split_whitespace().next().unwrap_or("<EOF>")
            )));
        }
    };
    let rest = rest.trim_start();
    let Some(body) = rest.strip_prefix('{') else {
        return Err(malformed(
            "No search term found. The search term must be enclosed in braces.",
        ));
    };
    // Scan the term up to the first unescaped '}'.
    let mut term = String::new();
    let mut groups: Vec<Vec<Word>> = vec![Vec::new()];
    let mut word = String::new();
    let mut prefix = false;
    let mut in_quotes = false;
    let mut depth = 0usize;
    let mut end = None;
    let mut chars = body.char_indices();
    let flush = |word: &mut String, prefix: &mut bool, groups: &mut Vec<Vec<Word>>| {
        if word.is_empty() {
            return;
        }
        let w = std::mem::take(word);
        if w == "OR" {
            groups.push(Vec::new());
        } else if w != "AND"
            && let Some(g) = groups.last_mut()
        {
            g.push(Word {
                text: w.to_lowercase(),
                prefix: *prefix,
            });
        }
        *prefix = false;
    };
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    return Err(malformed("unterminated escape in search term"));
                };
                term.push(e);
                word.push(e);
            }
            '}' => {
                end = Some(i);
                break;
            }
            '{' => return Err(malformed("unexpected token: '{'")),
            '(' if !in_quotes => {
                depth += 1;
                term.push(c);
                flush(&mut word, &mut prefix, &mut groups);
            }
            ')' if !in_quotes => {
                let Some(d) = depth.checked_sub(1) else {
                    return Err(malformed(
                        "unbalanced ')' in the search term: escape it as \\) to search for it",
                    ));
                };
                depth = d;
                term.push(c);
                flush(&mut word, &mut prefix, &mut groups);
            }
            c if RESERVED.contains(c) && !SYNTAX.contains(c) => {
                return Err(malformed(format!(
                    "unescaped reserved character '{c}' in the search term: escape it as \\{c} (reserved inside FIND {{}}: {RESERVED})"
                )));
            }
            '"' => {
                in_quotes = !in_quotes;
                if !in_quotes {
                    flush(&mut word, &mut prefix, &mut groups);
                }
            }
            '*' | '?' => {
                term.push(c);
                prefix = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                term.push(c);
                flush(&mut word, &mut prefix, &mut groups);
            }
            c => {
                term.push(c);
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut prefix, &mut groups);
    let Some(end) = end else {
        return Err(malformed(
            "No search term found. The search term must be enclosed in braces.",
        ));
    };
    if in_quotes {
        return Err(malformed("unterminated '\"' in the search term"));
    }
    if depth > 0 {
        return Err(malformed("unbalanced '(' in the search term"));
    }
    groups.retain(|g| !g.is_empty());
    let meaningful: usize = term.chars().filter(|c| c.is_alphanumeric()).count();
    if meaningful < 2 {
        return Err(ApiError::new(
            "INVALID_SEARCH",
            format!(
                "search term must be longer than one character: {}",
                term.trim()
            ),
        ));
    }
    let mut p = Parser::new(soql::tokenize(&body[end + 1..]).map_err(|e| malformed(e.message))?);
    let mut scope = Scope::All;
    if p.eat_kw("IN") {
        scope = if p.eat_kw("ALL") {
            Scope::All
        } else if p.eat_kw("NAME") {
            Scope::Name
        } else if p.eat_kw("EMAIL") {
            Scope::Email
        } else if p.eat_kw("PHONE") {
            Scope::Phone
        } else {
            return Err(relabel(p.unexpected()));
        };
        p.expect_kw("FIELDS").map_err(relabel)?;
    }
    let mut returning = Vec::new();
    if p.eat_kw("RETURNING") {
        loop {
            let object = p.ident().map_err(relabel)?;
            let mut r = Returning {
                object,
                fields: Vec::new(),
                filter: None,
                order: Vec::new(),
                limit: None,
            };
            if p.eat(&soql::Tok::LParen) {
                r.fields = p.field_list().map_err(relabel)?;
                if p.eat_kw("WHERE") {
                    r.filter = Some(p.condition().map_err(relabel)?);
                }
                if p.eat_kw("ORDER") {
                    p.expect_kw("BY").map_err(relabel)?;
                    r.order = p.order_list().map_err(relabel)?;
                }
                if p.eat_kw("LIMIT") {
                    r.limit = Some(p.number().map_err(relabel)?);
                }
                p.expect(&soql::Tok::RParen).map_err(relabel)?;
            }
            returning.push(r);
            if !p.eat(&soql::Tok::Comma) {
                break;
            }
        }
    }
    let limit = if p.eat_kw("LIMIT") {
        Some(p.number().map_err(relabel)?)
    } else {
        None
    };
    if !p.at_end() {
        return Err(relabel(p.unexpected()));
    }
    Ok(Search {
        term: term.trim().to_string(),
        groups,
        scope,
        returning,
        limit,
    })
}

fn relabel(e: ApiError) -> ApiError {
    if e.error_code == "MALFORMED_QUERY" {
        malformed(e.message)
    } else {
        e
    }
}

/// Whether a term is a phone number: digits and phone punctuation only,
/// and enough digits to be more than a fragment.
fn phone_term(term: &str) -> bool {
    term.chars()
        .all(|c| c.is_ascii_digit() || " +()-./*".contains(c))
        && term.chars().filter(char::is_ascii_digit).count() >= phone::MIN_DIGITS
}

fn word_in(text: &str, w: &Word) -> bool {
    let hay = text.to_lowercase();
    let needle = w.text.as_str();
    if needle.is_empty() {
        return false;
    }
    let mut from = 0;
    while let Some(pos) = hay[from..].find(needle) {
        let start = from + pos;
        let end = start + needle.len();
        let before_ok = hay[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let after_ok = w.prefix
            || hay[end..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric());
        if before_ok && after_ok {
            return true;
        }
        from = start + needle.chars().next().map_or(1, char::len_utf8);
    }
    false
}

fn candidate_fields(schema: &ObjectSchema, scope: Scope) -> Vec<usize> {
    schema
        .fields
        .iter()
        .enumerate()
        .filter(|(_, f)| match scope {
            Scope::Phone => f.ftype == FieldType::Phone,
            Scope::Email => f.ftype == FieldType::Email,
            Scope::Name => matches!(f.name, "Name" | "FirstName" | "LastName" | "Company"),
            Scope::All => matches!(
                f.ftype,
                FieldType::String
                    | FieldType::TextArea
                    | FieldType::Phone
                    | FieldType::Email
                    | FieldType::Picklist
            ),
        })
        .map(|(i, _)| i)
        .collect()
}

fn default_objects() -> Vec<Returning> {
    ["Contact", "Lead", "Account"]
        .into_iter()
        .map(|o| Returning {
            object: o.into(),
            fields: Vec::new(),
            filter: None,
            order: Vec::new(),
            limit: None,
        })
        .collect()
}

/// The records of one RETURNING item that match.
pub struct Hits<'a> {
    pub table: &'a Table,
    pub fields: Vec<usize>,
    pub rows: Vec<u32>,
}

/// Runs a search against the org.
pub fn run<'a>(search: &Search, org: &'a Org, now: Instant) -> Result<Vec<Hits<'a>>, ApiError> {
    let items = if search.returning.is_empty() {
        default_objects()
    } else {
        search.returning.clone()
    };
    let phone = phone_term(&search.term);
    let mut out = Vec::new();
    let mut budget = search.limit.unwrap_or(2000).min(2000);
    for item in &items {
        let schema = org
            .schemas()
            .by_name(&item.object)
            .ok_or_else(|| soql::invalid_type(&item.object))?;
        if !schema.searchable {
            return Err(ApiError::new(
                "INVALID_TYPE",
                format!("entity type {} does not support search", schema.name),
            ));
        }
        let table = org
            .table(schema.name)
            .ok_or_else(|| soql::invalid_type(&item.object))?;
        let fields = if item.fields.is_empty() {
            vec![0]
        } else {
            item.fields
                .iter()
                .map(|f| soql::resolve_field(schema, f))
                .collect::<Result<_, _>>()?
        };
        let filter = item
            .filter
            .as_ref()
            .map(|c| soql::bind(schema, c))
            .transpose()?;
        let order = soql::bind_order(schema, &item.order)?;
        let cands = candidate_fields(schema, search.scope);
        let phone_fields: Vec<usize> = schema
            .fields_of_type(FieldType::Phone)
            .filter(|i| cands.contains(i))
            .collect();
        let mut rows: Vec<u32> = table
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_searchable(now))
            .filter(|(_, r)| {
                let text_hit = || {
                    search.groups.iter().any(|g| {
                        g.iter().all(|w| {
                            cands
                                .iter()
                                .any(|&fi| r.get(fi).as_str().is_some_and(|t| word_in(t, w)))
                        })
                    })
                };
                if phone {
                    phone_fields.iter().any(|&fi| {
                        r.get(fi)
                            .as_str()
                            .is_some_and(|t| phone::matches(t, &search.term))
                    }) || (search.scope != Scope::Phone && text_hit())
                } else {
                    text_hit()
                }
            })
            .filter(|(_, r)| filter.as_ref().is_none_or(|f| f.matches(r)))
            .map(|(i, _)| i as u32)
            .collect();
        soql::sort(table, &mut rows, &order);
        if let Some(l) = item.limit {
            rows.truncate(l);
        }
        rows.truncate(budget);
        budget -= rows.len();
        out.push(Hits {
            table,
            fields,
            rows,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_phone_search() {
        let s = parse(
            r"FIND {\+14155550100} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone, OwnerId), Lead(Id, Name WHERE IsConverted = false LIMIT 5), Account",
        )
        .unwrap();
        assert_eq!(s.term, "+14155550100");
        assert_eq!(s.scope, Scope::Phone);
        assert_eq!(s.returning.len(), 3);
        assert_eq!(
            s.returning[0].fields,
            vec!["Id", "Name", "Phone", "OwnerId"]
        );
        assert_eq!(s.returning[1].limit, Some(5));
        assert!(s.returning[1].filter.is_some());
        assert!(s.returning[2].fields.is_empty());
    }

    #[test]
    fn escapes_inside_braces() {
        let s = parse(r"FIND {a\}b \{c\} d\\e \-f} RETURNING Contact").unwrap();
        assert_eq!(s.term, r"a}b {c} d\e -f");
        assert!(parse(r"FIND {abc").is_err());
        assert!(parse(r"FIND abc").is_err());
        assert_eq!(parse(r"FIND {a}").unwrap_err().error_code, "INVALID_SEARCH");
        assert_eq!(
            parse(r"FIND {abc} IN BOGUS FIELDS").unwrap_err().error_code,
            "MALFORMED_SEARCH"
        );
        assert_eq!(
            parse(r"FIND {abc} RETURNING Contact(")
                .unwrap_err()
                .error_code,
            "MALFORMED_SEARCH"
        );
    }

    #[test]
    fn an_unescaped_reserved_character_is_malformed_and_an_escaped_one_is_not() {
        for c in "&|!^~:'+-[]".chars() {
            let unescaped = format!("FIND {{a{c}b}} IN ALL FIELDS");
            let e = parse(&unescaped).unwrap_err();
            assert_eq!(e.error_code, "MALFORMED_SEARCH", "{unescaped}");
            assert!(e.message.contains(&format!("'{c}'")), "{}", e.message);
            assert!(
                e.message.contains(&format!("\\{c}")),
                "names the fix: {}",
                e.message
            );
            let escaped = format!("FIND {{a\\{c}b}} IN ALL FIELDS");
            assert_eq!(parse(&escaped).unwrap().term, format!("a{c}b"), "{escaped}");
        }
        // The E.164 `+` and a national number's `-` must be escaped.
        assert_eq!(
            parse("FIND {+14155550100} IN PHONE FIELDS")
                .unwrap_err()
                .error_code,
            "MALFORMED_SEARCH"
        );
        assert_eq!(
            parse("FIND {555-0100} IN PHONE FIELDS")
                .unwrap_err()
                .error_code,
            "MALFORMED_SEARCH"
        );
        // What has a meaning unescaped: wildcards, phrases, grouping.
        assert!(parse("FIND {(jane OR joe) AND smi*}").is_ok());
        assert!(parse("FIND {\"jane smith\" jo?n}").is_ok());
        assert_eq!(
            parse("FIND {(415) 555}").unwrap().term,
            "(415) 555",
            "balanced parentheses group"
        );
        for unbalanced in ["FIND {(415 555}", "FIND {415) 555}", "FIND {\"jane}"] {
            assert_eq!(
                parse(unbalanced).unwrap_err().error_code,
                "MALFORMED_SEARCH",
                "{unbalanced}"
            );
        }
    }

    #[test]
    fn words_and_groups() {
        let s = parse("FIND {jane OR \"acme corp\" smi*}").unwrap();
        assert_eq!(s.groups.len(), 2);
        assert_eq!(
            s.groups[0],
            vec![Word {
                text: "jane".into(),
                prefix: false
            }]
        );
        assert_eq!(s.groups[1][0].text, "acme corp");
        assert!(s.groups[1][1].prefix);
    }

    #[test]
    fn word_matching_respects_boundaries() {
        let w = |t: &str, p: bool| Word {
            text: t.into(),
            prefix: p,
        };
        assert!(word_in("Jane Smith", &w("smith", false)));
        assert!(!word_in("Jane Smithers", &w("smith", false)));
        assert!(word_in("Jane Smithers", &w("smith", true)));
        assert!(word_in("jane@example.org", &w("jane@example.org", false)));
    }
}
