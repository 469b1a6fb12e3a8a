//! A SOQL subset: a tokenizer, a recursive-descent parser, binding to the
//! schema (Salesforce's INVALID_TYPE / INVALID_FIELD errors) and evaluation.
//!
//! Supported: `SELECT f1, f2 | COUNT() | COUNT(f) | FIELDS(ALL|STANDARD)
//! FROM Object [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
//! [LIMIT n] [OFFSET n]`, where conditions use `= != <> < <= > >= LIKE
//! IN (...) NOT IN (...)`, `AND`, `OR`, `NOT` and parentheses. As in SOQL,
//! `AND` and `OR` cannot be mixed at one level without parentheses.

use std::cmp::Ordering;

use serde_json::Value;

use crate::error::ApiError;
use crate::ids;
use crate::schema::{FieldType, ObjectSchema, Schemas};
use crate::store::{Record, Table};
use crate::time;

/// A lexical token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    /// A quoted string: its value, and its LIKE form (keeps `\%` and `\_`).
    Str(String, String),
    Num(f64),
    Date(i64),
    DateTime(i64),
    LParen,
    RParen,
    Comma,
    Op(&'static str),
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Str(s, _) => format!("'{s}'"),
            Tok::Num(n) => n.to_string(),
            Tok::Date(ms) => time::format_date(*ms),
            Tok::DateTime(ms) => time::format_datetime(*ms),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Op(o) => (*o).into(),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
}

fn malformed(msg: impl Into<String>) -> ApiError {
    ApiError::new("MALFORMED_QUERY", msg)
}

/// Splits SOQL text into tokens.
pub fn tokenize(src: &str) -> Result<Vec<Tok>, ApiError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '=' => {
                out.push(Tok::Op("="));
                i += 1
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op("!="));
                i += 2
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    out.push(Tok::Op("<="));
                    i += 2
                }
                Some('>') => {
                    out.push(Tok::Op("!="));
                    i += 2
                }
                _ => {
                    out.push(Tok::Op("<"));
                    i += 1
                }
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::Op(">="));
                    i += 2
                } else {
                    out.push(Tok::Op(">"));
                    i += 1
                }
            }
            '\'' => {
                let (mut value, mut like) = (String::new(), String::new());
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(malformed("unexpected token: '<EOF>' (unterminated string)"));
                    };
                    i += 1;
                    match c {
                        '\'' => break,
                        '\\' => {
                            let Some(&e) = chars.get(i) else {
                                return Err(malformed(
                                    "Invalid string literal: unterminated escape",
                                ));
                            };
                            i += 1;
                            let (v, l) = match e {
                                'n' => ("\n".to_string(), "\n".to_string()),
                                't' => ("\t".into(), "\t".into()),
                                'r' => ("\r".into(), "\r".into()),
                                'b' => ("\u{8}".into(), "\u{8}".into()),
                                'f' => ("\u{c}".into(), "\u{c}".into()),
                                '\'' | '"' | '\\' => (e.to_string(), format!("\\{e}")),
                                '%' | '_' => (e.to_string(), format!("\\{e}")),
                                other => {
                                    return Err(malformed(format!(
                                        "Invalid string literal '\\{other}'. Illegal character sequence '\\{other}' in string literal."
                                    )));
                                }
                            };
                            value.push_str(&v);
                            like.push_str(&l);
                        }
                        c => {
                            value.push(c);
                            like.push(c);
                        }
                    }
                }
                out.push(Tok::Str(value, like));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || matches!(chars[i], '-' | ':' | '.' | '+'))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                if let Ok(n) = text.parse::<f64>() {
                    out.push(Tok::Num(n));
                } else if let Some(ms) = time::parse_datetime(&text) {
                    out.push(Tok::DateTime(ms));
                } else if let Some(ms) = time::parse_date(&text) {
                    out.push(Tok::Date(ms));
                } else {
                    return Err(malformed(format!("unexpected token: '{text}'")));
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(malformed(format!("unexpected token: '{other}'"))),
        }
    }
    Ok(out)
}

/// A literal value in a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Num(f64),
    Str(String, String),
    Date(i64),
    DateTime(i64),
}

/// A parsed (unbound) condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Cmp {
        field: String,
        op: &'static str,
        value: Literal,
    },
    In {
        field: String,
        negated: bool,
        values: Vec<Literal>,
    },
    Like {
        field: String,
        pattern: String,
    },
}

/// What the SELECT list asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    Fields(Vec<String>),
    /// `COUNT()`: only totalSize.
    Count,
    /// `COUNT(field)`: one AggregateResult.
    CountField(String),
    /// `FIELDS(ALL)` / `FIELDS(STANDARD)`.
    AllFields,
}

/// An ORDER BY item.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub field: String,
    pub desc: bool,
    pub nulls_last: Option<bool>,
}

/// A parsed SOQL query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Select,
    pub object: String,
    pub filter: Option<Cond>,
    pub order: Vec<OrderBy>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

/// A recursive-descent parser over tokens (shared with SOSL).
pub struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    pub fn new(toks: Vec<Tok>) -> Parser {
        Parser { toks, pos: 0 }
    }

    pub fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    pub fn advance(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    pub fn unexpected(&self) -> ApiError {
        match self.peek() {
            Some(t) => malformed(format!("unexpected token: '{}'", t.text())),
            None => malformed("unexpected token: '<EOF>'"),
        }
    }

    pub fn peek_kw(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| t.is_kw(kw))
    }

    pub fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn expect_kw(&mut self, kw: &str) -> Result<(), ApiError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    pub fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, t: &Tok) -> Result<(), ApiError> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    pub fn ident(&mut self) -> Result<String, ApiError> {
        match self.peek() {
            Some(Tok::Ident(s)) if !is_reserved(s) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.unexpected()),
        }
    }

    pub fn number(&mut self) -> Result<usize, ApiError> {
        match self.peek() {
            Some(Tok::Num(n)) if *n >= 0.0 && n.fract() == 0.0 => {
                let n = *n as usize;
                self.pos += 1;
                Ok(n)
            }
            _ => Err(self.unexpected()),
        }
    }

    /// `f1, f2, ...` (used by SOSL RETURNING lists too).
    pub fn field_list(&mut self) -> Result<Vec<String>, ApiError> {
        let mut fields = vec![self.ident()?];
        while self.eat(&Tok::Comma) {
            fields.push(self.ident()?);
        }
        Ok(fields)
    }

    fn select(&mut self) -> Result<Select, ApiError> {
        if self.peek_kw("COUNT") && self.toks.get(self.pos + 1) == Some(&Tok::LParen) {
            self.pos += 2;
            if self.eat(&Tok::RParen) {
                return Ok(Select::Count);
            }
            let f = self.ident()?;
            self.expect(&Tok::RParen)?;
            return Ok(Select::CountField(f));
        }
        if self.peek_kw("FIELDS") && self.toks.get(self.pos + 1) == Some(&Tok::LParen) {
            self.pos += 2;
            if !(self.eat_kw("ALL") || self.eat_kw("STANDARD")) {
                return Err(self.unexpected());
            }
            self.expect(&Tok::RParen)?;
            return Ok(Select::AllFields);
        }
        Ok(Select::Fields(self.field_list()?))
    }

    /// A WHERE condition. `AND` and `OR` may not be mixed at one level.
    pub fn condition(&mut self) -> Result<Cond, ApiError> {
        let first = self.unary()?;
        if self.peek_kw("AND") {
            let mut items = vec![first];
            while self.eat_kw("AND") {
                items.push(self.unary()?);
            }
            if self.peek_kw("OR") {
                return Err(self.unexpected());
            }
            return Ok(Cond::And(items));
        }
        if self.peek_kw("OR") {
            let mut items = vec![first];
            while self.eat_kw("OR") {
                items.push(self.unary()?);
            }
            if self.peek_kw("AND") {
                return Err(self.unexpected());
            }
            return Ok(Cond::Or(items));
        }
        Ok(first)
    }

    fn unary(&mut self) -> Result<Cond, ApiError> {
        if self.eat_kw("NOT") {
            return Ok(Cond::Not(Box::new(self.unary()?)));
        }
        if self.eat(&Tok::LParen) {
            let c = self.condition()?;
            self.expect(&Tok::RParen)?;
            return Ok(c);
        }
        let field = self.ident()?;
        if self.eat_kw("LIKE") {
            return match self.advance() {
                Some(Tok::Str(_, like)) => Ok(Cond::Like {
                    field,
                    pattern: like,
                }),
                _ => {
                    self.pos -= 1;
                    Err(self.unexpected())
                }
            };
        }
        let negated =
            if self.peek_kw("NOT") && self.toks.get(self.pos + 1).is_some_and(|t| t.is_kw("IN")) {
                self.pos += 1;
                true
            } else {
                false
            };
        if self.eat_kw("IN") {
            self.expect(&Tok::LParen)?;
            let mut values = vec![self.literal()?];
            while self.eat(&Tok::Comma) {
                values.push(self.literal()?);
            }
            self.expect(&Tok::RParen)?;
            return Ok(Cond::In {
                field,
                negated,
                values,
            });
        }
        match self.advance() {
            Some(Tok::Op(op)) => Ok(Cond::Cmp {
                field,
                op,
                value: self.literal()?,
            }),
            _ => {
                self.pos -= 1;
                Err(self.unexpected())
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, ApiError> {
        let lit = match self.peek() {
            Some(Tok::Str(v, l)) => Literal::Str(v.clone(), l.clone()),
            Some(Tok::Num(n)) => Literal::Num(*n),
            Some(Tok::Date(d)) => Literal::Date(*d),
            Some(Tok::DateTime(d)) => Literal::DateTime(*d),
            Some(t) if t.is_kw("null") => Literal::Null,
            Some(t) if t.is_kw("true") => Literal::Bool(true),
            Some(t) if t.is_kw("false") => Literal::Bool(false),
            _ => return Err(self.unexpected()),
        };
        self.pos += 1;
        Ok(lit)
    }

    /// `f [ASC|DESC] [NULLS FIRST|LAST], ...` after ORDER BY.
    pub fn order_list(&mut self) -> Result<Vec<OrderBy>, ApiError> {
        let mut out = Vec::new();
        loop {
            let field = self.ident()?;
            let desc = if self.eat_kw("DESC") {
                true
            } else {
                self.eat_kw("ASC");
                false
            };
            let nulls_last = if self.eat_kw("NULLS") {
                if self.eat_kw("FIRST") {
                    Some(false)
                } else if self.eat_kw("LAST") {
                    Some(true)
                } else {
                    return Err(self.unexpected());
                }
            } else {
                None
            };
            out.push(OrderBy {
                field,
                desc,
                nulls_last,
            });
            if !self.eat(&Tok::Comma) {
                return Ok(out);
            }
        }
    }
}

const RESERVED: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "ORDER",
    "BY",
    "LIMIT",
    "OFFSET",
    "IN",
    "LIKE",
    "NULLS",
    "ASC",
    "DESC",
    "RETURNING",
    "FIND",
    "NULL",
    "TRUE",
    "FALSE",
    "GROUP",
    "HAVING",
];

fn is_reserved(s: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
}

/// Parses a SOQL statement.
pub fn parse(src: &str) -> Result<Query, ApiError> {
    let mut p = Parser::new(tokenize(src)?);
    p.expect_kw("SELECT")?;
    let select = p.select()?;
    p.expect_kw("FROM")?;
    let object = p.ident()?;
    let filter = if p.eat_kw("WHERE") {
        Some(p.condition()?)
    } else {
        None
    };
    let order = if p.eat_kw("ORDER") {
        p.expect_kw("BY")?;
        p.order_list()?
    } else {
        Vec::new()
    };
    let limit = if p.eat_kw("LIMIT") {
        Some(p.number()?)
    } else {
        None
    };
    let offset = if p.eat_kw("OFFSET") {
        Some(p.number()?)
    } else {
        None
    };
    if !p.at_end() {
        return Err(p.unexpected());
    }
    Ok(Query {
        select,
        object,
        filter,
        order,
        limit,
        offset,
    })
}

/// A literal converted for comparison with one field.
#[derive(Debug, Clone)]
pub enum Val {
    Null,
    Bool(bool),
    Num(f64),
    /// Lower-cased text.
    Text(String),
    Time(i64),
}

/// A condition bound to field indexes.
#[derive(Debug, Clone)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cmp {
        fi: usize,
        ftype: FieldType,
        op: &'static str,
        value: Val,
        /// A date-time value as the emulator writes date-times: records
        /// holding that form compare as text, without parsing each (a
        /// `SystemModstamp >` query scans every user).
        canonical: Option<String>,
    },
    In {
        fi: usize,
        ftype: FieldType,
        negated: bool,
        values: Vec<Val>,
    },
    Like {
        fi: usize,
        pattern: Vec<LikeTok>,
    },
}

/// A piece of a LIKE pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum LikeTok {
    Char(char),
    Any,
    One,
}

/// The INVALID_FIELD error for an unknown column.
pub fn no_such_column(field: &str, object: &str) -> ApiError {
    if field.contains('.') {
        let rel = field.split('.').next().unwrap_or(field);
        return ApiError::new(
            "INVALID_FIELD",
            format!(
                "Didn't understand relationship '{rel}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
            ),
        );
    }
    ApiError::new(
        "INVALID_FIELD",
        format!(
            "No such column '{field}' on entity '{object}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."
        ),
    )
}

/// The INVALID_TYPE error for an unknown object.
pub fn invalid_type(object: &str) -> ApiError {
    ApiError::new(
        "INVALID_TYPE",
        format!(
            "sObject type '{object}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
        ),
    )
}

pub fn resolve_field(schema: &ObjectSchema, field: &str) -> Result<usize, ApiError> {
    schema
        .field_index(field)
        .ok_or_else(|| no_such_column(field, schema.name))
}

fn bind_value(schema: &ObjectSchema, fi: usize, lit: &Literal) -> Result<Val, ApiError> {
    let f = &schema.fields[fi];
    let wrong = |t: &str, quoted: bool| {
        ApiError::new(
            "INVALID_QUERY_FILTER_OPERATOR",
            format!(
                "value of filter criterion for field '{}' must be of type {t} and should {}be enclosed in quotes",
                f.name,
                if quoted { "" } else { "not " }
            ),
        )
    };
    Ok(match (f.ftype, lit) {
        (_, Literal::Null) => Val::Null,
        (FieldType::Boolean, Literal::Bool(b)) => Val::Bool(*b),
        (FieldType::Boolean, _) => return Err(wrong("boolean", false)),
        (FieldType::Int | FieldType::Double, Literal::Num(n)) => Val::Num(*n),
        (FieldType::Int | FieldType::Double, _) => return Err(wrong("double", false)),
        (FieldType::DateTime, Literal::DateTime(ms)) => Val::Time(*ms),
        (FieldType::DateTime, _) => return Err(wrong("dateTime", false)),
        (FieldType::Date, Literal::Date(ms)) => Val::Time(*ms),
        (FieldType::Date, _) => return Err(wrong("date", false)),
        (FieldType::Id | FieldType::Reference, Literal::Str(s, _)) => {
            if s.is_empty() {
                Val::Null
            } else {
                let id = ids::normalize(s).ok_or_else(|| {
                    ApiError::new(
                        "INVALID_QUERY_FILTER_OPERATOR",
                        format!("invalid ID field: {s}"),
                    )
                })?;
                Val::Text(id.to_lowercase())
            }
        }
        (_, Literal::Str(s, _)) => Val::Text(s.to_lowercase()),
        _ => return Err(wrong("string", true)),
    })
}

fn parse_like(pattern: &str) -> Vec<LikeTok> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.extend(n.to_lowercase().map(LikeTok::Char));
                }
            }
            '%' => out.push(LikeTok::Any),
            '_' => out.push(LikeTok::One),
            c => out.extend(c.to_lowercase().map(LikeTok::Char)),
        }
    }
    out
}

/// Binds a condition to a schema.
pub fn bind(schema: &ObjectSchema, cond: &Cond) -> Result<Filter, ApiError> {
    Ok(match cond {
        Cond::And(items) => Filter::And(
            items
                .iter()
                .map(|c| bind(schema, c))
                .collect::<Result<_, _>>()?,
        ),
        Cond::Or(items) => Filter::Or(
            items
                .iter()
                .map(|c| bind(schema, c))
                .collect::<Result<_, _>>()?,
        ),
        Cond::Not(c) => Filter::Not(Box::new(bind(schema, c)?)),
        Cond::Cmp { field, op, value } => {
            let fi = resolve_field(schema, field)?;
            let ftype = schema.fields[fi].ftype;
            if matches!(*op, "<" | "<=" | ">" | ">=") && ftype == FieldType::Boolean {
                return Err(ApiError::new(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    format!(
                        "invalid operator on boolean field: {}",
                        schema.fields[fi].name
                    ),
                ));
            }
            let value = bind_value(schema, fi, value)?;
            let canonical = match (ftype, &value) {
                (FieldType::DateTime, Val::Time(ms)) => Some(time::format_datetime(*ms)),
                _ => None,
            };
            Filter::Cmp {
                fi,
                ftype,
                op,
                value,
                canonical,
            }
        }
        Cond::In {
            field,
            negated,
            values,
        } => {
            let fi = resolve_field(schema, field)?;
            let vals = values
                .iter()
                .map(|v| bind_value(schema, fi, v))
                .collect::<Result<_, _>>()?;
            Filter::In {
                fi,
                ftype: schema.fields[fi].ftype,
                negated: *negated,
                values: vals,
            }
        }
        Cond::Like { field, pattern } => {
            let fi = resolve_field(schema, field)?;
            if !schema.fields[fi].ftype.is_text()
                || matches!(
                    schema.fields[fi].ftype,
                    FieldType::Id | FieldType::Reference
                )
            {
                return Err(ApiError::new(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    format!("invalid operator on id field: {}", schema.fields[fi].name),
                ));
            }
            Filter::Like {
                fi,
                pattern: parse_like(pattern),
            }
        }
    })
}

fn field_val(v: &Value, ftype: FieldType) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => Val::Num(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => match ftype {
            FieldType::DateTime => time::parse_datetime(s).map(Val::Time).unwrap_or(Val::Null),
            FieldType::Date => time::parse_date(s).map(Val::Time).unwrap_or(Val::Null),
            _ => Val::Text(s.to_lowercase()),
        },
        _ => Val::Null,
    }
}

fn text_eq(v: &Value, lower: &str) -> bool {
    match v.as_str() {
        Some(s) if s.is_ascii() => s.eq_ignore_ascii_case(lower),
        Some(s) => s.to_lowercase() == lower,
        None => false,
    }
}

fn cmp_vals(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
        (Val::Text(x), Val::Text(y)) => Some(x.cmp(y)),
        (Val::Time(x), Val::Time(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn eq_val(v: &Value, ftype: FieldType, want: &Val) -> bool {
    match want {
        Val::Null => v.is_null(),
        Val::Text(t) if ftype.is_text() => text_eq(v, t),
        _ => cmp_vals(&field_val(v, ftype), want) == Some(Ordering::Equal),
    }
}

fn like(text: &[char], pat: &[LikeTok]) -> bool {
    // Iterative wildcard matching with backtracking on the last `%`.
    let (mut t, mut p) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        match pat.get(p) {
            Some(LikeTok::Any) => {
                star = Some(p);
                mark = t;
                p += 1;
            }
            Some(LikeTok::One) => {
                t += 1;
                p += 1;
            }
            Some(LikeTok::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some(s) => {
                    p = s + 1;
                    mark += 1;
                    t = mark;
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|x| *x == LikeTok::Any)
}

impl Filter {
    /// Whether a record matches.
    pub fn matches(&self, r: &Record) -> bool {
        match self {
            Filter::And(items) => items.iter().all(|f| f.matches(r)),
            Filter::Or(items) => items.iter().any(|f| f.matches(r)),
            Filter::Not(f) => !f.matches(r),
            Filter::Cmp {
                fi,
                ftype,
                op,
                value,
                canonical,
            } => {
                let v = r.get(*fi);
                match *op {
                    "=" => eq_val(v, *ftype, value),
                    "!=" => !eq_val(v, *ftype, value),
                    _ => {
                        let ord = match (canonical, v.as_str()) {
                            (Some(want), Some(have)) if time::is_canonical(have) => {
                                Some(have.cmp(want.as_str()))
                            }
                            _ => cmp_vals(&field_val(v, *ftype), value),
                        };
                        match *op {
                            "<" => ord == Some(Ordering::Less),
                            "<=" => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                            ">" => ord == Some(Ordering::Greater),
                            ">=" => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                            _ => false,
                        }
                    }
                }
            }
            Filter::In {
                fi,
                ftype,
                negated,
                values,
            } => {
                let v = r.get(*fi);
                values.iter().any(|want| eq_val(v, *ftype, want)) != *negated
            }
            Filter::Like { fi, pattern } => match r.get(*fi).as_str() {
                Some(s) => {
                    let chars: Vec<char> = s.chars().flat_map(char::to_lowercase).collect();
                    like(&chars, pattern)
                }
                None => false,
            },
        }
    }
}

/// A sort key item bound to a field.
#[derive(Debug, Clone)]
pub struct SortKey {
    pub fi: usize,
    pub ftype: FieldType,
    pub desc: bool,
    pub nulls_last: bool,
}

pub fn bind_order(schema: &ObjectSchema, order: &[OrderBy]) -> Result<Vec<SortKey>, ApiError> {
    order
        .iter()
        .map(|o| {
            let fi = resolve_field(schema, &o.field)?;
            Ok(SortKey {
                fi,
                ftype: schema.fields[fi].ftype,
                desc: o.desc,
                nulls_last: o.nulls_last.unwrap_or(o.desc),
            })
        })
        .collect()
}

/// Sorts record positions by the keys (stable; nulls first unless told).
pub fn sort(table: &Table, rows: &mut Vec<u32>, keys: &[SortKey]) {
    if keys.is_empty() {
        return;
    }
    let mut keyed: Vec<(Vec<Val>, u32)> = rows
        .iter()
        .map(|&r| {
            (
                keys.iter()
                    .map(|k| field_val(table.records[r as usize].get(k.fi), k.ftype))
                    .collect(),
                r,
            )
        })
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        for (k, (x, y)) in keys.iter().zip(a.iter().zip(b.iter())) {
            let ord = match (x, y) {
                (Val::Null, Val::Null) => Ordering::Equal,
                (Val::Null, _) => {
                    if k.nulls_last {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                (_, Val::Null) => {
                    if k.nulls_last {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                _ => {
                    let o = cmp_vals(x, y).unwrap_or(Ordering::Equal);
                    if k.desc { o.reverse() } else { o }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
    *rows = keyed.into_iter().map(|(_, r)| r).collect();
}

/// What a compiled query returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Records(Vec<usize>),
    Count,
    CountField,
}

/// A query bound to the schema, ready to run.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub schema: &'static ObjectSchema,
    pub shape: Shape,
    pub filter: Option<Filter>,
    pub order: Vec<SortKey>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

/// Parses and binds a SOQL statement to an org's `schemas`.
pub fn compile(src: &str, schemas: &'static Schemas) -> Result<Compiled, ApiError> {
    let q = parse(src)?;
    let schema = schemas
        .by_name(&q.object)
        .ok_or_else(|| invalid_type(&q.object))?;
    let shape = match &q.select {
        Select::Fields(fields) => Shape::Records(
            fields
                .iter()
                .map(|f| resolve_field(schema, f))
                .collect::<Result<_, _>>()?,
        ),
        Select::AllFields => {
            if q.limit.is_none_or(|l| l > 200) {
                return Err(malformed(
                    "The SOQL FIELDS function must have a LIMIT of at most 200",
                ));
            }
            Shape::Records((0..schema.fields.len()).collect())
        }
        Select::Count => Shape::Count,
        Select::CountField(f) => {
            resolve_field(schema, f)?;
            Shape::CountField
        }
    };
    let filter = q.filter.as_ref().map(|c| bind(schema, c)).transpose()?;
    let order = bind_order(schema, &q.order)?;
    Ok(Compiled {
        schema,
        shape,
        filter,
        order,
        limit: q.limit,
        offset: q.offset,
    })
}

impl Compiled {
    /// Runs the query: positions of the matching records, in order.
    pub fn run(&self, table: &Table) -> Vec<u32> {
        let mut rows: Vec<u32> = table
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| self.filter.as_ref().is_none_or(|f| f.matches(r)))
            .map(|(i, _)| i as u32)
            .collect();
        sort(table, &mut rows, &self.order);
        let offset = self.offset.unwrap_or(0).min(rows.len());
        rows.drain(..offset);
        if let Some(l) = self.limit {
            rows.truncate(l);
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SCHEMAS;

    fn err(src: &str) -> String {
        compile(src, &SCHEMAS).unwrap_err().error_code
    }

    #[test]
    fn parses_a_full_query() {
        let q = parse(
            "select Id, Name FROM Contact WHERE (Phone LIKE '%555%' OR MobilePhone != null) AND Name IN ('a', 'b') \
             ORDER BY Name DESC NULLS LAST, Id LIMIT 10 OFFSET 5",
        )
        .unwrap();
        assert_eq!(q.select, Select::Fields(vec!["Id".into(), "Name".into()]));
        assert_eq!(q.object, "Contact");
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.offset, Some(5));
        assert_eq!(q.order.len(), 2);
        assert!(q.order[0].desc && q.order[0].nulls_last == Some(true));
        let Some(Cond::And(items)) = q.filter else {
            panic!("and expected")
        };
        assert!(matches!(items[0], Cond::Or(_)));
        assert!(matches!(&items[1], Cond::In { negated: false, values, .. } if values.len() == 2));
    }

    #[test]
    fn strings_and_escapes() {
        let toks = tokenize(r"'O\'Brien' 'a\%b' 'x\\y'").unwrap();
        assert_eq!(toks[0], Tok::Str("O'Brien".into(), r"O\'Brien".into()));
        assert_eq!(toks[1], Tok::Str("a%b".into(), r"a\%b".into()));
        assert_eq!(toks[2], Tok::Str(r"x\y".into(), r"x\\y".into()));
        assert!(tokenize("'open").is_err());
        assert!(tokenize(r"'bad \q'").is_err());
    }

    #[test]
    fn literals() {
        let q = parse("SELECT Id FROM User WHERE IsActive = true AND CreatedDate > 2025-01-01T00:00:00Z AND LastModifiedDate < 2026-01-01T00:00:00.000+0000").unwrap();
        let Some(Cond::And(items)) = q.filter else {
            panic!()
        };
        assert!(matches!(
            items[0],
            Cond::Cmp {
                value: Literal::Bool(true),
                ..
            }
        ));
        assert!(matches!(
            items[1],
            Cond::Cmp {
                value: Literal::DateTime(_),
                op: ">",
                ..
            }
        ));
        assert!(matches!(
            items[2],
            Cond::Cmp {
                value: Literal::DateTime(_),
                op: "<",
                ..
            }
        ));
    }

    #[test]
    fn malformed_queries() {
        for q in [
            "",
            "SELECT",
            "SELECT Id",
            "SELECT Id FROM",
            "SELECT Id FROM User WHERE",
            "SELECT Id FROM User WHERE Name = ",
            "SELECT Id FROM User WHERE Name = 'a' AND Id = 'b' OR Email = 'c'",
            "SELECT Id FROM User WHERE Name = 'a' OR Id = 'b' AND Email = 'c'",
            "SELECT Id FROM User LIMIT x",
            "SELECT Id FROM User junk",
            "SELECT Id, FROM User",
            "SELECT Id FROM User WHERE Name = \"double\"",
            "SELECT Id FROM User WHERE (Name = 'a'",
        ] {
            assert_eq!(err(q), "MALFORMED_QUERY", "{q}");
        }
    }

    #[test]
    fn binding_errors() {
        assert_eq!(err("SELECT Id FROM Nope"), "INVALID_TYPE");
        assert_eq!(err("SELECT Bogus FROM Contact"), "INVALID_FIELD");
        assert_eq!(err("SELECT Owner.Name FROM Contact"), "INVALID_FIELD");
        assert_eq!(
            err("SELECT Id FROM Contact WHERE Bogus = 'x'"),
            "INVALID_FIELD"
        );
        assert_eq!(
            err("SELECT Id FROM Contact ORDER BY Bogus"),
            "INVALID_FIELD"
        );
        assert_eq!(
            err("SELECT Id FROM User WHERE IsActive = 'true'"),
            "INVALID_QUERY_FILTER_OPERATOR"
        );
        assert_eq!(
            err("SELECT Id FROM Contact WHERE Id = 'abc'"),
            "INVALID_QUERY_FILTER_OPERATOR"
        );
        assert_eq!(
            err("SELECT Id FROM Contact WHERE Name = 5"),
            "INVALID_QUERY_FILTER_OPERATOR"
        );
        assert_eq!(err("SELECT FIELDS(ALL) FROM Contact"), "MALFORMED_QUERY");
        assert!(compile("SELECT FIELDS(ALL) FROM Contact LIMIT 200", &SCHEMAS).is_ok());
        assert!(compile("select count() from lead", &SCHEMAS).is_ok());
    }

    #[test]
    fn like_matching() {
        let m = |text: &str, pat: &str| like(&text.chars().collect::<Vec<_>>(), &parse_like(pat));
        assert!(m("hello world", "hello%"));
        assert!(m("hello world", "%world"));
        assert!(m("hello world", "%lo w%"));
        assert!(m("hello", "h_llo"));
        assert!(!m("hello", "h_lo"));
        assert!(m("100%", r"100\%"));
        assert!(!m("1000", r"100\%"));
        assert!(m("", "%"));
        assert!(!m("abc", "abd"));
    }
}
