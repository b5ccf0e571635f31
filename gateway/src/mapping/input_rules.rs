//! What the services enforce on request fields, said once so `/openapi.json` can state it:
//! required fields, lengths, character sets, numeric ranges and list sizes. proto3 has no
//! words for these, so each rule names the field by its request message and JSON path
//! (`referral.invite.v1.CreateInvitationRequest` + `recipient.name`), or by the message that
//! holds it (`referral.common.v1.Utm` + `source`) where every use of that message follows it.
//!
//! A rule must say exactly what the service checks: looser, and schemathesis's valid
//! requests get 400s; stricter, and its invalid ones get 200s. `scripts/schemathesis.sh`
//! proves both directions against the running mesh. A new route's fields need rules here
//! only where its service refuses something; closed objects, enums without `*_UNSPECIFIED`
//! and the int64/duration shapes come from the descriptors on their own.

use std::{collections::HashMap, sync::LazyLock};

use referral_common::{
    Violations, input,
    input::{EMAIL_MAX, ID_MAX, NAME_MAX, PHONE_MAX, TEXT_MAX, URL_MAX, UTM_MAX},
};
use regex::Regex;
use serde_json::{Map, Value, json};

use super::descriptor::{self, Kind};

/// Which characters a string may hold (`common::input`'s `line` and `text`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chars {
    Any,
    /// No control characters, no line breaks (C0, DEL, C1, U+2028, U+2029).
    Line,
    /// As `Line`, but `\n`, `\r` and `\t` are allowed.
    Text,
}

/// One field's constraints. Strings: lengths in characters; numbers: an inclusive range;
/// repeated fields: the list's size (the item constraints apply to each item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub required: bool,
    pub chars: Chars,
    /// The value must hold a non-whitespace character (`common::input::id`'s "is required").
    pub non_blank: bool,
    pub min_len: Option<usize>,
    pub max_len: Option<usize>,
    /// An extra pattern the value must match (ECMA-262, as JSON Schema reads it, and the
    /// `regex` crate's syntax: keep to classes, groups and counted repeats), and what a
    /// value that does not match is told.
    pub pattern: Option<(&'static str, &'static str)>,
    pub minimum: Option<i64>,
    pub maximum: Option<i64>,
    pub min_items: Option<usize>,
    pub max_items: Option<usize>,
    /// The only values a string may take (for a list: each item).
    pub values: Option<&'static [&'static str]>,
    /// A list may not hold the same value twice.
    pub unique: bool,
    /// Each item of the list is judged alone, as if sent on its own: an item that breaks a
    /// rule is answered in the response (the batch's per-item error), never with a 400, so
    /// the document gives the items their shape only (docs/api.md, "Batches").
    pub alone: bool,
}

const fn base() -> Rule {
    Rule {
        required: false,
        chars: Chars::Any,
        non_blank: false,
        min_len: None,
        max_len: None,
        pattern: None,
        minimum: None,
        maximum: None,
        min_items: None,
        max_items: None,
        values: None,
        unique: false,
        alone: false,
    }
}

/// A single-line string of at most `max` characters (`input::line`).
pub const fn line(max: usize) -> Rule {
    Rule {
        chars: Chars::Line,
        max_len: Some(max),
        ..base()
    }
}

/// Multi-line text of at most `max` characters (`input::text`).
pub const fn text(max: usize) -> Rule {
    Rule {
        chars: Chars::Text,
        max_len: Some(max),
        ..base()
    }
}

/// A required identifier (`input::id`): present, not blank, single line, at most `ID_MAX`.
pub const fn id() -> Rule {
    line(ID_MAX).required().non_blank()
}

/// An optional identifier (`input::optional_id`).
pub const fn opt_id() -> Rule {
    line(ID_MAX)
}

/// A required value with no other constraint (enums without `*_UNSPECIFIED`, messages).
pub const fn required() -> Rule {
    base().required()
}

/// A number in `[min, max]`.
pub const fn range(min: i64, max: i64) -> Rule {
    Rule {
        minimum: Some(min),
        maximum: Some(max),
        ..base()
    }
}

/// A list of at most `max` items.
pub const fn items(min: usize, max: usize) -> Rule {
    Rule {
        min_items: Some(min),
        max_items: Some(max),
        ..base()
    }
}

impl Rule {
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub const fn optional(mut self) -> Self {
        self.required = false;
        self.non_blank = false;
        self.min_len = None;
        self
    }

    pub const fn non_blank(mut self) -> Self {
        self.non_blank = true;
        self.min_len = Some(1);
        self
    }

    pub const fn one_of(mut self, values: &'static [&'static str]) -> Self {
        self.values = Some(values);
        self
    }

    pub const fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    pub const fn judged_alone(mut self) -> Self {
        self.alone = true;
        self
    }

    pub const fn pattern(mut self, pattern: &'static str, message: &'static str) -> Self {
        self.pattern = Some((pattern, message));
        self
    }

    /// The keywords this rule adds to a field's schema (`schema` is the field's own type
    /// schema; for a repeated field the array's, whose `items` take the string and number
    /// keywords).
    pub fn apply(&self, schema: &mut Value) {
        if schema.get("type") == Some(&json!("array")) {
            if let Some(n) = self.min_items {
                schema["minItems"] = json!(n);
            }
            if let Some(n) = self.max_items {
                schema["maxItems"] = json!(n);
            }
            if self.unique {
                schema["uniqueItems"] = json!(true);
            }
            if let Some(item) = schema.get_mut("items") {
                self.apply_scalar(item);
            }
        } else {
            self.apply_scalar(schema);
        }
    }

    fn apply_scalar(&self, schema: &mut Value) {
        if let Some(n) = self.min_len {
            schema["minLength"] = json!(n);
        }
        if let Some(n) = self.max_len {
            schema["maxLength"] = json!(n);
        }
        // The rule's own pattern first: generators draw from `pattern` and filter by `allOf`,
        // and a narrow pattern drawn from a broad one would be filtered away.
        let mut patterns: Vec<&str> = self.pattern.map(|(p, _)| p).into_iter().collect();
        match self.chars {
            Chars::Any => {}
            Chars::Line => patterns.push(LINE_PATTERN),
            Chars::Text => patterns.push(TEXT_PATTERN),
        }
        if self.non_blank {
            patterns.push(NON_BLANK_PATTERN);
        }
        match patterns.as_slice() {
            [] => {}
            [one] => schema["pattern"] = json!(one),
            // JSON Schema has one `pattern` per schema: more go into `allOf`.
            [first, rest @ ..] => {
                schema["pattern"] = json!(first);
                schema["allOf"] = rest.iter().map(|p| json!({"pattern": p})).collect();
            }
        }
        if let Some(values) = self.values {
            // An enum's `$ref` gives way to the subset the service takes.
            if let Some(m) = schema.as_object_mut() {
                m.remove("$ref");
                m.insert("type".into(), json!("string"));
            }
            schema["enum"] = json!(values);
        }
        if let Some(n) = self.minimum {
            schema["minimum"] = json!(n);
        }
        if let Some(n) = self.maximum {
            schema["maximum"] = json!(n);
        }
    }
}

/// `common::input::is_forbidden` as a pattern: no C0, DEL, C1, U+2028 or U+2029.
pub const LINE_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$";
/// As [`LINE_PATTERN`] with tab, LF and CR allowed.
pub const TEXT_PATTERN: &str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u2028\u2029]*$";
/// Something other than white space (`str::trim` is not empty).
pub const NON_BLANK_PATTERN: &str = r"\S";

/// The rule for the field at `path` (JSON names) below the request message `root`: the most
/// specific entry wins, from the root's full path down to the field's own message.
pub fn lookup(root: &str, path: &[String]) -> Option<Rule> {
    let d = descriptor::get();
    // (message, path inside it) for the root and every message on the way down.
    let mut scopes: Vec<(String, usize)> = vec![(root.to_string(), 0)];
    let mut message = root.to_string();
    for (depth, name) in path.iter().enumerate().take(path.len().saturating_sub(1)) {
        let Some(field) = d.fields(&message).into_iter().find(|f| &f.json_name == name) else {
            break;
        };
        match field.kind {
            Kind::Message(inner) => {
                scopes.push((inner.clone(), depth + 1));
                message = inner;
            }
            _ => break,
        }
    }
    scopes
        .iter()
        .find_map(|(message, from)| {
            let key = path[*from..].join(".");
            RULES
                .iter()
                .find(|(m, p, _)| m == message && *p == key)
                .map(|(_, _, rule)| *rule)
        })
        .or_else(|| by_name(path.last()?))
}

/// Rules every request message follows by field name: `common::paging`'s page size.
fn by_name(field: &str) -> Option<Rule> {
    (field == "pageSize").then_some(PAGE_SIZE)
}

/// Enums by name only, as the document says: the proto3 JSON mapping would also read a
/// number (`"vendorType": 0` as "unset"). The JSON mapping refuses those numbers; every other
/// rule here is the services' to enforce (with authorization first, and a batch's items
/// judged alone).
pub fn enum_numbers(message: &str, input: &Value) -> Vec<(String, String)> {
    check(message, input)
        .into_iter()
        .filter(|(f, d)| d.starts_with("must be one of") && value_at(input, f).is_some_and(Value::is_number))
        .collect()
}

/// The value at a violation's path (`invitations[2].channel`).
fn value_at<'a>(input: &'a Value, path: &str) -> Option<&'a Value> {
    let mut at = input;
    for segment in path.split('.') {
        let (name, indexes) = segment
            .split_once('[')
            .map_or((segment, ""), |(n, rest)| (n, rest));
        at = at.get(name)?;
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            at = at.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(at)
}

/// Integral floats (`548.0`, which JSON Schema counts as an integer) as integers, which the
/// proto3 JSON decoder wants for integer fields (and takes for floating ones).
pub fn whole_numbers(value: &mut Value) {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e18) {
                *value = Value::from(f as i64);
            }
        }
        Value::Object(map) => map.values_mut().for_each(whole_numbers),
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// The request (body, query and path merged, as the RPC's JSON) against the rules and the
/// shapes the spec states beyond what the proto3 JSON decoder checks: enums by name and never
/// `*_UNSPECIFIED`, no `null`. Returns `(field path, what is wrong)` for each violation, with
/// the services' own wording; types and unknown fields are left to the decoder.
pub fn check(root: &str, request: &Value) -> Vec<(String, String)> {
    let mut v = Violations::default();
    if let Value::Object(map) = request {
        check_message(root, root, &[], map, &mut v);
    }
    v.0
}

fn check_message(root: &str, message: &str, path: &[String], map: &Map<String, Value>, v: &mut Violations) {
    let d = descriptor::get();
    for f in d.fields(message) {
        let mut at = path.to_vec();
        at.push(f.json_name.clone());
        let field = at.join(".");
        let rule = lookup(root, &at);
        // Either spelling reaches the decoder; rules are stated for the JSON name.
        let value = map.get(&f.json_name).or_else(|| map.get(&f.name));
        let Some(value) = value else {
            if rule.is_some_and(|r| r.required) {
                v.add(&field, "is required");
            }
            continue;
        };
        if value.is_null() {
            v.add(&field, "must not be null: leave the field out instead");
            continue;
        }
        if f.repeated {
            let Value::Array(list) = value else { continue };
            if let Some(rule) = rule {
                if rule.min_items.is_some_and(|n| list.len() < n)
                    || rule.max_items.is_some_and(|n| list.len() > n)
                {
                    v.add(&field, items_message(&rule));
                    continue;
                }
                if rule.unique && list.iter().enumerate().any(|(i, x)| list[..i].contains(x)) {
                    v.add(&field, "must not list a value twice");
                    continue;
                }
            }
            for (i, item) in list.iter().enumerate() {
                let mut item_at = at.clone();
                if let Some(last) = item_at.last_mut() {
                    *last = format!("{last}[{i}]");
                }
                check_value(root, &f.kind, rule, &item_at, item, v);
            }
        } else {
            check_value(root, &f.kind, rule, &at, value, v);
        }
    }
}

fn check_value(
    root: &str,
    kind: &Kind,
    rule: Option<Rule>,
    at: &[String],
    value: &Value,
    v: &mut Violations,
) {
    let field = at.join(".");
    match (kind, value) {
        (Kind::Enum(name), _) => {
            let names = descriptor::get().enum_values(name);
            // The rule's subset where the service takes only some values.
            let allowed: Vec<&str> = match rule.and_then(|r| r.values) {
                Some(values) => values.to_vec(),
                None => names
                    .iter()
                    .map(String::as_str)
                    .filter(|n| !n.ends_with("_UNSPECIFIED"))
                    .collect(),
            };
            if !value.as_str().is_some_and(|s| allowed.contains(&s)) {
                let listed = allowed;
                v.add(&field, format!("must be one of {}", listed.join(", ")));
            }
        }
        (Kind::Message(name), Value::Object(map)) if !kind.is_scalar_like() => {
            // Rules below a nested message are looked up from the request's root, with the
            // path inside it (`recipient.name`).
            let path: Vec<String> = at.iter().map(|p| strip_index(p).to_string()).collect();
            let mut inner = Violations::default();
            check_message(root, name, &path, map, &mut inner);
            // The path above names the list items; the lookups need it without indexes.
            for (f, d) in inner.0 {
                v.add(&reindex(&f, at), d);
            }
        }
        (_, Value::String(s)) if int_range(kind, rule.as_ref()).is_some() => {
            // Some: the guard just said so.
            let (lo, hi) = int_range(kind, rule.as_ref()).unwrap_or_default();
            let pattern = int_pattern(lo, hi);
            let fits = Regex::new(&pattern).is_ok_and(|re| re.is_match(s));
            if !fits || !s.parse::<i64>().is_ok_and(|n| (lo..=hi).contains(&n)) {
                v.add(&field, range_message(lo, hi));
            }
        }
        (_, Value::Number(n)) if int_range(kind, rule.as_ref()).is_some() => {
            // Some: the guard just said so.
            let (lo, hi) = int_range(kind, rule.as_ref()).unwrap_or_default();
            // JSON Schema counts 548.0 as an integer; so does the decoder.
            let whole = n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e18)
                    .map(|f| f as i64)
            });
            if !whole.is_some_and(|n| (lo..=hi).contains(&n)) {
                v.add(&field, range_message(lo, hi));
            }
        }
        // proto3 JSON takes "1.5" too; the document says a number, so the edge holds to it.
        (Kind::Float | Kind::Double, Value::String(_)) => v.add(&field, "must be a number"),
        (_, Value::String(s)) => {
            if let Some(rule) = rule {
                check_string(&rule, s, &field, v);
            }
        }
        (_, Value::Number(n)) => {
            if let Some(rule) = rule {
                check_number(&rule, n.as_f64(), &field, v);
            }
        }
        _ => {}
    }
}

fn check_string(rule: &Rule, s: &str, field: &str, v: &mut Violations) {
    if rule.non_blank && s.trim().is_empty() {
        v.add(field, "is required");
        return;
    }
    let before = v.0.len();
    match (rule.chars, rule.max_len) {
        (Chars::Line, Some(max)) => input::line(v, s, max, field),
        (Chars::Text, Some(max)) => input::text(v, s, max, field),
        (Chars::Line, None) => input::line(v, s, usize::MAX / 8, field),
        (Chars::Text, None) => input::text(v, s, usize::MAX / 8, field),
        (Chars::Any, Some(max)) if s.chars().count() > max => {
            v.add(field, format!("must be at most {max} characters"))
        }
        (Chars::Any, _) => {}
    }
    if v.0.len() > before {
        return;
    }
    if rule.min_len.is_some_and(|n| s.chars().count() < n) {
        v.add(field, "is required");
    } else if let Some(values) = rule.values
        && !values.contains(&s)
    {
        v.add(field, format!("must be one of {}", values.join(", ")));
    } else if let Some((pattern, message)) = rule.pattern
        && !compiled(pattern).is_some_and(|re| re.is_match(s))
    {
        v.add(field, message);
    }
}

fn check_number(rule: &Rule, n: Option<f64>, field: &str, v: &mut Violations) {
    let (Some(n), true) = (n, rule.minimum.is_some() || rule.maximum.is_some()) else {
        return;
    };
    let low = rule.minimum.is_some_and(|m| n < m as f64);
    let high = rule.maximum.is_some_and(|m| n > m as f64);
    if low || high {
        let message = match (rule.minimum, rule.maximum) {
            (Some(lo), Some(hi)) => format!("must be between {lo} and {hi}"),
            (Some(lo), None) => format!("must be at least {lo}"),
            (None, Some(hi)) => format!("must be at most {hi}"),
            (None, None) => return,
        };
        v.add(field, message);
    }
}

fn range_message(lo: i64, hi: i64) -> String {
    format!("must be an integer between {lo} and {hi} (a number, or its decimal string)")
}

fn items_message(rule: &Rule) -> String {
    match (rule.min_items, rule.max_items) {
        (Some(lo), Some(hi)) => format!("must hold {lo} to {hi} items"),
        (Some(lo), None) => format!("must hold at least {lo} items"),
        (None, Some(hi)) => format!("must hold at most {hi} items"),
        (None, None) => String::new(),
    }
}

/// The accepted range of an integer field: its rule's, else its type's. 64-bit fields stop
/// at 18 digits, so their decimal-string form has a simple exact pattern.
pub fn int_range(kind: &Kind, rule: Option<&Rule>) -> Option<(i64, i64)> {
    const DIGITS_18: i64 = 999_999_999_999_999_999;
    let (lo, hi) = match kind {
        Kind::Int32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        Kind::Uint32 => (0, i64::from(u32::MAX)),
        Kind::Int64 => (-DIGITS_18, DIGITS_18),
        Kind::Uint64 => (0, DIGITS_18),
        _ => return None,
    };
    let lo = rule.and_then(|r| r.minimum).map_or(lo, |m| m.max(lo));
    let hi = rule.and_then(|r| r.maximum).map_or(hi, |m| m.min(hi));
    Some((lo, hi))
}

/// A pattern for the decimal strings of `[lo, hi]` (proto3 JSON takes integers as strings
/// too). It may leave out a few values at the top end (`hi` = 250 allows strings to 99) so it
/// stays a plain digit count; numbers cover the whole range. `lo` must be 1 at most.
pub fn int_pattern(lo: i64, hi: i64) -> String {
    // The most digits every number of which is at most hi (and at least -lo when negative).
    let bound = if lo < 0 { hi.min(lo.saturating_neg()) } else { hi };
    let mut digits = 0u32;
    while digits < 18 && 10i64.pow(digits + 1) - 1 <= bound {
        digits += 1;
    }
    let tail = if digits > 1 {
        format!("[0-9]{{0,{}}}", digits - 1)
    } else {
        String::new()
    };
    let positive = if digits == 0 {
        // hi < 9: a single digit class.
        format!("[{}-{}]", lo.max(1), hi.max(1))
    } else {
        format!("[1-9]{tail}")
    };
    match (lo < 0, lo <= 0) {
        (true, _) => format!("^(0|-?{positive})$"),
        (false, true) => format!("^(0|{positive})$"),
        (false, false) => format!("^{positive}$"),
    }
}

/// An integer field's input schema: a number in range, or its decimal string. In a query
/// every value is text, and the edge reads an integer parameter as a number: a number only.
pub fn int_schema(kind: &Kind, rule: Option<&Rule>, in_query: bool) -> Option<Value> {
    let (lo, hi) = int_range(kind, rule)?;
    if in_query {
        return Some(json!({"type": "integer", "minimum": lo, "maximum": hi}));
    }
    Some(json!({
        "type": ["integer", "string"],
        "minimum": lo,
        "maximum": hi,
        "pattern": int_pattern(lo, hi),
        "description": "An integer, or its decimal string",
    }))
}

/// `invitations[3]` -> `invitations`.
fn strip_index(segment: &str) -> &str {
    segment.split_once('[').map_or(segment, |(name, _)| name)
}

/// A violation found below `at` (named without list indexes) named with them.
fn reindex(field: &str, at: &[String]) -> String {
    let plain: Vec<&str> = at.iter().map(|p| strip_index(p)).collect();
    let prefix = plain.join(".");
    match field.strip_prefix(&prefix) {
        Some(rest) => format!("{}{rest}", at.join(".")),
        None => field.to_string(),
    }
}

/// Each rule's pattern, compiled once.
fn compiled(pattern: &str) -> Option<&'static Regex> {
    static CACHE: LazyLock<HashMap<&'static str, Regex>> = LazyLock::new(|| {
        RULES
            .iter()
            .filter_map(|(_, _, r)| r.pattern)
            .filter_map(|(p, _)| Regex::new(p).ok().map(|re| (p, re)))
            .collect()
    });
    CACHE.get(pattern)
}

/// Every rule, for the test that each names a real field.
pub fn all() -> &'static [(&'static str, &'static str, Rule)] {
    RULES
}

/// A click id: visible ASCII, at most `click_id::MAX_LEN` (invite-svc's `check_click_id`).
const CLICK_ID: Rule = Rule {
    max_len: Some(referral_common::click_id::MAX_LEN),
    ..base()
}
.pattern(
    "^[!-~]*$",
    "must be visible ASCII (no spaces or control characters)",
);
/// A visitor's earlier click ids (invite-svc's `attribution::MAX_EARLIER_CLICKS`).
const CLICK_IDS: Rule = Rule {
    max_items: Some(10),
    ..CLICK_ID
};
/// What an endpoint may subscribe to: every event type, or `*` for all.
static WEBHOOK_TYPES: &[&str] = &{
    let mut all = [""; referral_proto::events::v1::EVENT_TYPES.len() + 1];
    all[0] = "*";
    let mut i = 0;
    while i < referral_proto::events::v1::EVENT_TYPES.len() {
        all[i + 1] = referral_proto::events::v1::EVENT_TYPES[i];
        i += 1;
    }
    all
};
/// A referral code as invite-svc's `codes::normalize_code` reads it: one of our prefixes,
/// `-`, six letters and digits without 0, O, 1, I or L, in either case.
const CODE: Rule = line(64).required().pattern(
    "^([Ll][Oo][Vv][Ee]|[Ww][Ee][Dd]|[Dd][Rr][Ee][Aa][Mm]|[Bb][Ll][Ii][Ss][Ss]|[Cc][Hh][Aa][Rr][Mm]|[Cc][Oo][Uu][Pp][Ll][Ee]|[Uu][Nn][Ii][Tt][Yy]|[Ff][Oo][Rr][Ee][Vv][Ee][Rr]|[Hh][Ee][Aa][Rr][Tt][Ss]|[Vv][Oo][Ww][Ss])-[A-HJKMNP-Za-hjkmnp-z2-9]{6}$",
    "is not a referral code: codes look like LOVE-7K3M9P",
);
const CODE_OR_EMPTY: Rule = line(64).pattern(
    "^(([Ll][Oo][Vv][Ee]|[Ww][Ee][Dd]|[Dd][Rr][Ee][Aa][Mm]|[Bb][Ll][Ii][Ss][Ss]|[Cc][Hh][Aa][Rr][Mm]|[Cc][Oo][Uu][Pp][Ll][Ee]|[Uu][Nn][Ii][Tt][Yy]|[Ff][Oo][Rr][Ee][Vv][Ee][Rr]|[Hh][Ee][Aa][Rr][Tt][Ss]|[Vv][Oo][Ww][Ss])-[A-HJKMNP-Za-hjkmnp-z2-9]{6})?$",
    "is not a referral code: codes look like LOVE-7K3M9P",
);
/// A program's hold and expiry periods: incentive-svc takes 0s to 3650 days; the edge holds
/// them to 8 digits of seconds (1157 days), which a plain pattern can say exactly.
const PERIOD: Rule = base().pattern(
    r"^[0-9]{1,8}(\.[0-9]{1,9})?s$",
    "must be whole or decimal seconds such as 1209600s (at most 99999999s)",
);
const PAGE_SIZE: Rule = range(0, i32::MAX as i64);
/// Program ids: letters, digits, `-` and `_` (incentive-svc's `program::validate`).
const PROGRAM_ID: Rule = id().pattern(
    "^[A-Za-z0-9_-]{1,64}$",
    "must be 1-64 letters, digits, '-' or '_'",
);
/// ISO 4217 codes are three capitals; which three the services check (`input::is_currency`).
const CURRENCY: Rule = required().pattern("^[A-Z]{3}$", "must be an ISO 4217 code such as GBP");

/// (message, JSON path inside it, rule). Keep in step with the services' validators.
static RULES: &[(&str, &str, Rule)] = &[
    // Shared messages.
    ("referral.common.v1.Utm", "source", line(UTM_MAX)),
    ("referral.common.v1.Utm", "medium", line(UTM_MAX)),
    ("referral.common.v1.Utm", "campaign", line(UTM_MAX)),
    // invite-svc: codes
    ("referral.invite.v1.CreateReferralCodeRequest", "referrerId", id()),
    (
        "referral.invite.v1.CreateReferralCodeRequest",
        "referrerKind",
        required(),
    ),
    (
        "referral.invite.v1.CreateReferralCodeRequest",
        "campaignId",
        opt_id(),
    ),
    (
        "referral.invite.v1.CreateReferralCodeRequest",
        "landingUrl",
        line(URL_MAX),
    ),
    ("referral.invite.v1.GetReferralCodeRequest", "code", CODE),
    // invite-svc: invitations
    ("referral.invite.v1.CreateInvitationRequest", "referrerId", id()),
    (
        "referral.invite.v1.CreateInvitationRequest",
        "referrerKind",
        required(),
    ),
    (
        "referral.invite.v1.CreateInvitationRequest",
        "refereeKind",
        required(),
    ),
    (
        "referral.invite.v1.CreateInvitationRequest",
        "channel",
        required(),
    ),
    (
        "referral.invite.v1.CreateInvitationRequest",
        "weddingDate",
        line(10),
    ),
    (
        "referral.invite.v1.CreateInvitationRequest",
        "message",
        text(TEXT_MAX),
    ),
    (
        "referral.invite.v1.CreateInvitationRequest",
        "campaignId",
        opt_id(),
    ),
    (
        "referral.invite.v1.CreateInvitationRequest",
        "templateId",
        line(100),
    ),
    (
        "referral.invite.v1.CreateInvitationRequest",
        "referrerName",
        line(NAME_MAX),
    ),
    (
        "referral.invite.v1.CreateInvitationRequest",
        "businessName",
        line(NAME_MAX),
    ),
    ("referral.invite.v1.Recipient", "email", line(EMAIL_MAX)),
    ("referral.invite.v1.Recipient", "phone", line(PHONE_MAX)),
    ("referral.invite.v1.Recipient", "name", line(NAME_MAX)),
    ("referral.invite.v1.Recipient", "timezone", line(64)),
    // A batch's items may leave the referrer out (the batch's own is used).
    (
        "referral.invite.v1.BatchCreateInvitationsRequest",
        "referrerId",
        id(),
    ),
    (
        "referral.invite.v1.BatchCreateInvitationsRequest",
        "invitations",
        items(1, 100).required().judged_alone(),
    ),
    (
        "referral.invite.v1.BatchCreateInvitationsRequest",
        "invitations.referrerId",
        opt_id(),
    ),
    (
        "referral.invite.v1.BatchCreateInvitationsRequest",
        "invitations.referrerKind",
        base(),
    ),
    ("referral.invite.v1.GetInvitationRequest", "id", id()),
    ("referral.invite.v1.CancelInvitationRequest", "id", id()),
    ("referral.invite.v1.ListInvitationsRequest", "referrerId", id()),
    ("referral.invite.v1.SetReferrerTierRequest", "referrerId", id()),
    ("referral.invite.v1.SetReferrerTierRequest", "tier", required()),
    ("referral.invite.v1.GetReferrerRequest", "referrerId", id()),
    // invite-svc: tracking
    ("referral.invite.v1.RecordClickRequest", "code", CODE),
    ("referral.invite.v1.RecordClickRequest", "clickId", CLICK_ID),
    ("referral.invite.v1.RecordClickRequest", "visitorId", opt_id()),
    ("referral.invite.v1.RecordClickRequest", "previousClickId", CLICK_ID),
    ("referral.invite.v1.RecordClickRequest", "ip", line(64)),
    ("referral.invite.v1.RecordClickRequest", "deviceId", opt_id()),
    ("referral.invite.v1.RecordClickRequest", "invitationId", line(64)),
    ("referral.invite.v1.RecordSignupRequest", "userId", id()),
    ("referral.invite.v1.RecordSignupRequest", "userKind", required()),
    ("referral.invite.v1.RecordSignupRequest", "email", line(EMAIL_MAX)),
    ("referral.invite.v1.RecordSignupRequest", "code", CODE_OR_EMPTY),
    ("referral.invite.v1.RecordSignupRequest", "clickId", CLICK_ID),
    ("referral.invite.v1.RecordSignupRequest", "clickIds", CLICK_IDS),
    ("referral.invite.v1.RecordSignupRequest", "invitationId", line(64)),
    ("referral.invite.v1.RecordSignupRequest", "name", line(NAME_MAX)),
    ("referral.invite.v1.RecordSignupRequest", "ip", line(64)),
    ("referral.invite.v1.RecordSignupRequest", "deviceId", opt_id()),
    ("referral.invite.v1.RecordConversionRequest", "userId", id()),
    ("referral.invite.v1.RecordConversionRequest", "value", required()),
    (
        "referral.invite.v1.RecordConversionRequest",
        "value.amountMinor",
        range(1, input::DEFAULT_MAX_AMOUNT_MINOR).required(),
    ),
    (
        "referral.invite.v1.RecordConversionRequest",
        "value.currency",
        CURRENCY,
    ),
    ("referral.invite.v1.RecordConversionRequest", "plan", required()),
    // fraud-svc
    ("referral.fraud.v1.ListCasesRequest", "referrerId", opt_id()),
    ("referral.fraud.v1.GetCaseRequest", "id", id()),
    (
        "referral.fraud.v1.GetAssessmentRequest",
        "subjectType",
        required(),
    ),
    ("referral.fraud.v1.GetAssessmentRequest", "subjectId", id()),
    ("referral.fraud.v1.ResolveCaseRequest", "id", id()),
    (
        "referral.fraud.v1.ResolveCaseRequest",
        "decision",
        required().one_of(&["APPROVE", "REJECT"]),
    ),
    ("referral.fraud.v1.ResolveCaseRequest", "note", text(TEXT_MAX)),
    // incentive-svc
    ("referral.incentive.v1.PutRewardProgramRequest", "id", PROGRAM_ID),
    (
        "referral.incentive.v1.PutRewardProgramRequest",
        "program",
        required(),
    ),
    ("referral.incentive.v1.RewardProgram", "id", PROGRAM_ID.optional()),
    (
        "referral.incentive.v1.RewardProgram",
        "name",
        line(NAME_MAX).required().non_blank(),
    ),
    ("referral.incentive.v1.RewardProgram", "referrerKind", required()),
    ("referral.incentive.v1.RewardProgram", "currency", CURRENCY),
    ("referral.incentive.v1.RewardProgram", "milestones", items(0, 50)),
    ("referral.incentive.v1.RewardProgram", "holdDays", range(0, 3650)),
    ("referral.incentive.v1.RewardProgram", "holdPeriod", PERIOD),
    ("referral.incentive.v1.RewardProgram", "expiryPeriod", PERIOD),
    (
        "referral.incentive.v1.RewardProgram",
        "expiryDays",
        range(0, 3650),
    ),
    (
        "referral.incentive.v1.Milestone",
        "at",
        range(1, i32::MAX as i64).required(),
    ),
    ("referral.incentive.v1.Milestone", "reward", required()),
    (
        "referral.incentive.v1.Milestone",
        "reward.amountMinor",
        range(0, 999_999_999),
    ),
    (
        "referral.incentive.v1.ConversionReward",
        "cap.amountMinor",
        range(0, 999_999_999),
    ),
    ("referral.incentive.v1.ConversionReward", "percent", range(0, 100)),
    (
        "referral.incentive.v1.RewardProgram",
        "refereeReward.amountMinor",
        range(0, 999_999_999),
    ),
    ("referral.incentive.v1.GetRewardProgramRequest", "id", id()),
    (
        "referral.incentive.v1.ListRewardProgramsRequest",
        "pageSize",
        PAGE_SIZE,
    ),
    // With a program in the body, the path names it: a program id (`program::validate`).
    ("referral.incentive.v1.SimulateRewardProgramRequest", "id", PROGRAM_ID),
    (
        "referral.incentive.v1.CreateCampaignRequest",
        "name",
        line(NAME_MAX).required().non_blank(),
    ),
    (
        "referral.incentive.v1.CreateCampaignRequest",
        "startsAt",
        required(),
    ),
    (
        "referral.incentive.v1.CreateCampaignRequest",
        "endsAt",
        required(),
    ),
    (
        "referral.incentive.v1.CreateCampaignRequest",
        "multiplier",
        range(1, 10).required(),
    ),
    (
        "referral.incentive.v1.CreateCampaignRequest",
        "budgetCap.amountMinor",
        range(0, input::DEFAULT_MAX_AMOUNT_MINOR),
    ),
    (
        "referral.incentive.v1.CreateCampaignRequest",
        "budgetCap.currency",
        CURRENCY,
    ),
    (
        "referral.incentive.v1.ListCampaignsRequest",
        "pageSize",
        PAGE_SIZE,
    ),
    (
        "referral.incentive.v1.GetReferrerRewardsRequest",
        "referrerId",
        id(),
    ),
    (
        "referral.incentive.v1.GetReferrerRewardsRequest",
        "pageSize",
        PAGE_SIZE,
    ),
    ("referral.incentive.v1.CreatePayoutRequest", "referrerId", id()),
    ("referral.incentive.v1.GetPayoutRequest", "id", id()),
    // every service: the audit log (`common::audit::read`)
    ("referral.common.v1.ListAuditEntriesRequest", "actor", line(200)),
    ("referral.common.v1.ListAuditEntriesRequest", "action", line(200)),
    ("referral.common.v1.ListAuditEntriesRequest", "subject", line(200)),
    // invite-svc: API keys (`store::api_keys`)
    ("referral.invite.v1.RotateApiKeyRequest", "id", id()),
    ("referral.invite.v1.RevokeApiKeyRequest", "id", id()),
    // invite-svc: consent (`domain::suppression`): `{invitation id}.{64 hex digits}`
    (
        "referral.invite.v1.UnsubscribeRequest",
        "token",
        line(165).required().pattern(
            "^[A-Za-z0-9_-]{1,100}[.][0-9a-f]{64}$",
            "is not an unsubscribe link's token",
        ),
    ),
    ("referral.invite.v1.ListSuppressionsRequest", "email", line(EMAIL_MAX)),
    ("referral.invite.v1.ListSuppressionsRequest", "phone", line(PHONE_MAX)),
    ("referral.invite.v1.ListSuppressionsRequest", "pageSize", PAGE_SIZE),
    ("referral.invite.v1.LiftSuppressionRequest", "id", id()),
    // invite-svc: privacy requests (the person's user id; the request's id)
    ("referral.common.v1.CreatePrivacyRequestRequest", "personId", id()),
    ("referral.common.v1.GetPrivacyRequestRequest", "id", id()),
    // every service: parked work (`common::parked`); the id names its service and kind
    (
        "referral.common.v1.ListParkedRequest",
        "service",
        line(20).one_of(&["", "invite-svc", "fraud-svc", "incentive-svc", "analytics-svc"]),
    ),
    (
        "referral.common.v1.RetryParkedRequest",
        "id",
        id().pattern(
            "^(invite|fraud|incentive|analytics)[.](event|send)[.][0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            "is not a parked item id ({service}.{event|send}.{uuid})",
        ),
    ),
    // analytics-svc: exchange rates (`domain::fx`); the list's filter may be left empty
    ("referral.analytics.v1.PutFxRateRequest", "currency", CURRENCY),
    (
        "referral.analytics.v1.ListFxRatesRequest",
        "currency",
        base().pattern("^([A-Z]{3})?$", "must be an ISO 4217 code like EUR"),
    ),
    (
        "referral.analytics.v1.PutFxRateRequest",
        "rate",
        required().pattern(
            "^([1-9][0-9]{0,8}([.][0-9]{1,10})?|0[.][0-9]{0,9}[1-9])$",
            "must be a positive decimal number such as 1.1642",
        ),
    ),
    (
        "referral.analytics.v1.PutFxRateRequest",
        "effectiveFrom",
        required().pattern("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "must be a date like 2026-12-01"),
    ),
    // analytics-svc
    ("referral.analytics.v1.FunnelRequest", "referrerId", opt_id()),
    // analytics-svc's `reports::SERIES`, or empty for the default (invitations).
    (
        "referral.analytics.v1.TimeseriesRequest",
        "metric",
        base().one_of(&["", "invitations", "signups", "conversions", "revenue", "k_factor"]),
    ),
    ("referral.analytics.v1.LeaderboardRequest", "limit", range(0, 100)),
    (
        "referral.analytics.v1.SuperConnectorsRequest",
        "limit",
        range(0, 100),
    ),
    ("referral.analytics.v1.ExperimentRequest", "templateId", id()),
    ("referral.analytics.v1.ReferrerNetworkRequest", "referrerId", id()),
    // 0 (absent): every level analytics-svc allows; its MAX_NETWORK_DEPTH may lower the 3.
    ("referral.analytics.v1.ReferrerNetworkRequest", "depth", range(0, 3)),
    (
        "referral.analytics.v1.CreateWebhookEndpointRequest",
        "url",
        line(URL_MAX).required().non_blank(),
    ),
    (
        "referral.analytics.v1.CreateWebhookEndpointRequest",
        "eventTypes",
        items(1, 64).required().unique().one_of(WEBHOOK_TYPES),
    ),
    (
        "referral.analytics.v1.CreateWebhookEndpointRequest",
        "description",
        text(500),
    ),
    ("referral.analytics.v1.GetWebhookEndpointRequest", "id", id()),
    ("referral.analytics.v1.DeleteWebhookEndpointRequest", "id", id()),
    (
        "referral.analytics.v1.ListWebhookDeliveriesRequest",
        "endpointId",
        id(),
    ),
    (
        "referral.analytics.v1.ListWebhookDeliveriesRequest",
        "pageSize",
        PAGE_SIZE,
    ),
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const INVITATION: &str = "referral.invite.v1.CreateInvitationRequest";

    fn fields(root: &str, request: Value) -> Vec<String> {
        check(root, &request).into_iter().map(|(f, _)| f).collect()
    }

    fn good_invitation() -> Value {
        json!({"referrerId": "r1", "referrerKind": "SUPPLIER", "refereeKind": "COUPLE",
               "channel": "EMAIL", "recipient": {"email": "a@example.com", "name": "Ann"}})
    }

    #[test]
    fn every_rule_names_a_real_field_and_every_pattern_compiles() {
        let d = descriptor::get();
        for (message, path, rule) in all() {
            assert!(d.messages.contains_key(*message), "{message}");
            // Walk the path through the descriptors.
            let mut at = message.to_string();
            let parts: Vec<&str> = path.split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                let field = d
                    .fields(&at)
                    .into_iter()
                    .find(|f| f.json_name == *part)
                    .unwrap_or_else(|| panic!("{message}: {path}: no field {part}"));
                if i + 1 < parts.len() {
                    let Kind::Message(inner) = field.kind else {
                        panic!("{message}: {path}: {part} is not a message")
                    };
                    at = inner;
                }
            }
            if let Some((pattern, _)) = rule.pattern {
                assert!(Regex::new(pattern).is_ok(), "{message}.{path}: {pattern}");
                assert!(compiled(pattern).is_some());
            }
            assert!(
                rule.minimum.is_none_or(|m| m <= 1),
                "{message}.{path}: int_pattern needs lo <= 1"
            );
        }
        for p in [LINE_PATTERN, TEXT_PATTERN, NON_BLANK_PATTERN] {
            assert!(Regex::new(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn lookups_prefer_the_most_specific_rule() {
        let at = |p: &str| p.split('.').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(lookup(INVITATION, &at("referrerId")), Some(id()));
        assert_eq!(lookup(INVITATION, &at("recipient.name")), Some(line(NAME_MAX)));
        assert_eq!(lookup(INVITATION, &at("utm.source")), Some(line(UTM_MAX)));
        let batch = "referral.invite.v1.BatchCreateInvitationsRequest";
        // A batch's items may leave the referrer out; their recipients follow Recipient's.
        assert_eq!(lookup(batch, &at("invitations.referrerId")), Some(opt_id()));
        assert_eq!(
            lookup(batch, &at("invitations.recipient.name")),
            Some(line(NAME_MAX))
        );
        assert_eq!(lookup(INVITATION, &at("optimize")), None);
    }

    #[test]
    fn a_good_request_passes() {
        assert_eq!(check(INVITATION, &good_invitation()), vec![]);
    }

    #[test]
    fn violations_name_the_field_in_the_services_words() {
        let mut r = good_invitation();
        r.as_object_mut().unwrap().remove("referrerKind");
        r["referrerId"] = json!("   ");
        r["channel"] = json!("CHANNEL_UNSPECIFIED");
        r["recipient"]["name"] = json!("Ann\r\nBcc: x@y");
        r["message"] = json!("x".repeat(2001));
        r["utm"] = json!({"source": null});
        let v = check(INVITATION, &r);
        let named: Vec<&str> = v.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            named,
            [
                "referrerId",
                "referrerKind",
                "channel",
                "recipient.name",
                "message",
                "utm.source"
            ]
        );
        assert_eq!(v[0].1, "is required");
        assert_eq!(v[1].1, "is required");
        assert!(v[2].1.starts_with("must be one of EMAIL, SMS"), "{}", v[2].1);
        assert_eq!(v[3].1, "must not contain control characters or line breaks");
        assert_eq!(v[4].1, "must be at most 2000 characters");
        assert!(v[5].1.contains("null"));
        // Enums by name only: a number is refused even where proto3 JSON would take it.
        let mut r = good_invitation();
        r["channel"] = json!(1);
        assert_eq!(fields(INVITATION, r), ["channel"]);
    }

    #[test]
    fn list_items_are_named_with_their_index() {
        let batch = "referral.invite.v1.BatchCreateInvitationsRequest";
        let mut item = good_invitation();
        item["recipient"]["name"] = json!("a\u{0}b");
        let r = json!({"referrerId": "r1", "invitations": [good_invitation(), item]});
        assert_eq!(fields(batch, r), ["invitations[1].recipient.name"]);
        let r = json!({"referrerId": "r1", "invitations": []});
        assert_eq!(fields(batch, r), ["invitations"]);
        let r = json!({"referrerId": "r1", "invitations": vec![good_invitation(); 101]});
        assert_eq!(fields(batch, r), ["invitations"]);
    }

    #[test]
    fn integers_are_numbers_or_decimal_strings_in_range() {
        let conversion = "referral.invite.v1.RecordConversionRequest";
        let with = |amount: Value| json!({"userId": "u", "plan": "STARTER", "value": {"amountMinor": amount, "currency": "GBP"}});
        assert!(check(conversion, &with(json!(4500))).is_empty());
        assert!(check(conversion, &with(json!("4500"))).is_empty());
        for bad in [
            json!(0),
            json!("0"),
            json!(100_000_000_001i64),
            json!("1e3"),
            json!("-5"),
            json!(" 5"),
        ] {
            assert_eq!(
                fields(conversion, with(bad.clone())),
                ["value.amountMinor"],
                "{bad}"
            );
        }
        let list = "referral.invite.v1.ListInvitationsRequest";
        assert_eq!(
            fields(list, json!({"referrerId": "r", "pageSize": "-1"})),
            ["pageSize"]
        );
        assert!(check(list, &json!({"referrerId": "r", "pageSize": "20"})).is_empty());
    }

    #[test]
    fn int_patterns_cover_exactly_what_they_say() {
        assert_eq!(int_pattern(0, i64::from(i32::MAX)), "^(0|[1-9][0-9]{0,8})$");
        assert_eq!(int_pattern(1, 100_000_000_000), "^[1-9][0-9]{0,10}$");
        assert_eq!(int_pattern(0, 100), "^(0|[1-9][0-9]{0,1})$");
        assert_eq!(int_pattern(0, 5), "^(0|[1-5])$");
        let full = int_pattern(-999_999_999_999_999_999, 999_999_999_999_999_999);
        assert_eq!(full, "^(0|-?[1-9][0-9]{0,17})$");
        let re = Regex::new(&full).unwrap();
        assert!(re.is_match("-42") && re.is_match("0") && !re.is_match("007") && !re.is_match("-0"));
    }

    #[test]
    fn spec_keywords_follow_the_rule() {
        let mut s = json!({"type": "string"});
        id().apply(&mut s);
        assert_eq!(s["maxLength"], 128);
        assert_eq!(s["minLength"], 1);
        assert_eq!(s["pattern"], LINE_PATTERN);
        assert_eq!(s["allOf"][0]["pattern"], NON_BLANK_PATTERN);
        let mut list = json!({"type": "array", "items": {"type": "string"}});
        items(1, 64).unique().one_of(&["a", "b"]).apply(&mut list);
        assert_eq!(list["maxItems"], 64);
        assert_eq!(list["uniqueItems"], true);
        assert_eq!(list["items"]["enum"], json!(["a", "b"]));
    }

    #[test]
    fn enum_numbers_are_refused_by_the_mapping_only() {
        let m = "referral.invite.v1.CreateReferralCodeRequest";
        let v = enum_numbers(
            m,
            &json!({"referrerId": "r", "referrerKind": "SUPPLIER", "vendorType": 0}),
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].0, "vendorType");
        // Names, even unset ones, are the service's to judge.
        let v = enum_numbers(
            m,
            &json!({"referrerId": "r", "referrerKind": "PARTY_KIND_UNSPECIFIED"}),
        );
        assert!(v.is_empty(), "{v:?}");
    }
}
