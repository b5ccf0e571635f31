//! Message templates: data (a JSON catalog), one or more per flow and vendor type, each with
//! weighted A/B variants. The variant is assigned deterministically from the invitation id,
//! so a retry or a second replica renders the same variant, and it is recorded on the
//! invitation so analytics can compare variants.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::party::Flow;

/// The catalog shipped with the service (overridable with `TEMPLATES_FILE`).
pub const DEFAULT_CATALOG: &str = include_str!("../../templates/default.json");

/// Placeholders a template may use; anything else in braces is a catalog error.
pub const PLACEHOLDERS: &[&str] = &[
    "recipient_name",
    "referrer_name",
    "business_name",
    "wedding_date",
    "link",
    "code",
    "message",
];

/// Supplier vendor types a template may target (docs/api.md's list).
const VENDOR_TYPES: &[&str] = &[
    "PHOTOGRAPHER",
    "VENUE",
    "FLORIST",
    "PLANNER",
    "CATERER",
    "MUSIC",
    "OTHER",
];

/// Optional placeholders: a text line that uses one whose value is empty is left out, so
/// "Your wedding on {wedding_date}" disappears when no date was given.
const OPTIONAL: &[&str] = &["wedding_date", "message"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub templates: Vec<Template>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Template {
    pub id: String,
    /// The flow's API name, e.g. `SUPPLIER_TO_COUPLE`.
    pub flow: String,
    /// A supplier vendor type (`PHOTOGRAPHER`…); absent: the flow's general template.
    #[serde(default)]
    pub vendor_type: Option<String>,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    pub weight: u32,
    pub subject: String,
    pub text: String,
    pub sms: String,
}

/// A catalog that cannot be used; names the template so the operator can fix the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("the template catalog is not valid JSON of the expected shape: {0}")]
    Shape(String),
    #[error("template {id:?}: {problem}")]
    Template { id: String, problem: String },
    #[error("flow {0} has no general template (one without vendorType)")]
    MissingFlow(&'static str),
}

/// Why a requested template cannot be used for an invitation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error("unknown template `{0}`")]
    Unknown(String),
    #[error("template `{id}` is for flow {template_flow}, not {flow}")]
    WrongFlow {
        id: String,
        template_flow: String,
        flow: &'static str,
    },
}

impl Catalog {
    /// Parses and checks a catalog: unique ids and variant names, positive weights, known
    /// flows, vendor types and placeholders, and a general template for every flow.
    pub fn parse(json: &str) -> Result<Self, CatalogError> {
        let catalog: Catalog = serde_json::from_str(json).map_err(|e| CatalogError::Shape(e.to_string()))?;
        let mut ids = HashSet::new();
        for t in &catalog.templates {
            let bad = |problem: String| CatalogError::Template {
                id: t.id.clone(),
                problem,
            };
            if t.id.trim().is_empty() || t.id.len() > 100 {
                return Err(bad("id must be 1 to 100 characters".into()));
            }
            if !ids.insert(t.id.clone()) {
                return Err(bad("id is used twice".into()));
            }
            Flow::parse(&t.flow).map_err(|e| bad(e.to_string()))?;
            if let Some(v) = &t.vendor_type
                && !VENDOR_TYPES.contains(&v.as_str())
            {
                return Err(bad(format!("unknown vendorType {v:?}")));
            }
            if t.variants.is_empty() {
                return Err(bad("needs at least one variant".into()));
            }
            let mut names = HashSet::new();
            for v in &t.variants {
                if v.name.trim().is_empty() || !names.insert(v.name.clone()) {
                    return Err(bad(format!("variant name {:?} is empty or used twice", v.name)));
                }
                if v.weight == 0 {
                    return Err(bad(format!("variant {:?} needs a weight above 0", v.name)));
                }
                for text in [&v.subject, &v.text, &v.sms] {
                    if let Some(unknown) = unknown_placeholder(text) {
                        return Err(bad(format!(
                            "variant {:?} uses unknown placeholder {{{unknown}}}",
                            v.name
                        )));
                    }
                }
            }
        }
        for flow in Flow::ALL {
            if !catalog
                .templates
                .iter()
                .any(|t| t.flow == flow.as_str() && t.vendor_type.is_none())
            {
                return Err(CatalogError::MissingFlow(flow.as_str()));
            }
        }
        Ok(catalog)
    }

    /// The template an invitation uses: the one asked for (it must exist and fit the flow),
    /// else the flow's template for the referrer's vendor type, else the flow's general one.
    pub fn choose(
        &self,
        requested: &str,
        flow: Flow,
        vendor_type: Option<&str>,
    ) -> Result<&Template, ChoiceError> {
        let requested = requested.trim();
        if !requested.is_empty() {
            let t = self
                .templates
                .iter()
                .find(|t| t.id == requested)
                .ok_or_else(|| ChoiceError::Unknown(super::shown(requested)))?;
            if t.flow != flow.as_str() {
                return Err(ChoiceError::WrongFlow {
                    id: t.id.clone(),
                    template_flow: t.flow.clone(),
                    flow: flow.as_str(),
                });
            }
            return Ok(t);
        }
        let of_flow = || self.templates.iter().filter(|t| t.flow == flow.as_str());
        let specific = vendor_type.and_then(|v| of_flow().find(|t| t.vendor_type.as_deref() == Some(v)));
        specific
            .or_else(|| of_flow().find(|t| t.vendor_type.is_none()))
            .ok_or_else(|| ChoiceError::Unknown(flow.as_str().to_string()))
    }

    pub fn get(&self, id: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.id == id)
    }
}

impl Template {
    /// The variant for an invitation: a stable hash of its id and the template id, spread
    /// over the variants in proportion to their weights.
    pub fn assign(&self, invitation_id: &str) -> &Variant {
        let total: u64 = self.variants.iter().map(|v| u64::from(v.weight)).sum();
        let digest = Sha256::digest(format!("{}:{invitation_id}", self.id));
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let mut point = u64::from_be_bytes(first) % total.max(1);
        for v in &self.variants {
            let w = u64::from(v.weight);
            if point < w {
                return v;
            }
            point -= w;
        }
        // Unreachable with a checked catalog (weights sum to `total`); the first is safe.
        &self.variants[0]
    }

    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// What a message says about its invitation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Personalisation {
    pub recipient_name: String,
    pub referrer_name: String,
    pub business_name: String,
    pub wedding_date: Option<NaiveDate>,
    pub link: String,
    pub code: String,
    pub message: String,
}

impl Personalisation {
    /// The value of a placeholder, with friendly stand-ins for names nobody gave.
    fn value(&self, name: &str) -> String {
        let or = |s: &str, fallback: &str| {
            if s.trim().is_empty() {
                fallback.to_string()
            } else {
                s.trim().to_string()
            }
        };
        match name {
            "recipient_name" => or(&self.recipient_name, "there"),
            "referrer_name" => or(&self.referrer_name, &or(&self.business_name, "A friend")),
            "business_name" => or(&self.business_name, &or(&self.referrer_name, "us")),
            "wedding_date" => self
                .wedding_date
                .map(|d| d.format("%A %-d %B %Y").to_string())
                // No wedding date: the placeholder reads as nothing.
                .unwrap_or_default(),
            "link" => self.link.clone(),
            "code" => self.code.clone(),
            "message" => self.message.trim().to_string(),
            _ => String::new(),
        }
    }
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub sms: String,
}

pub fn render(variant: &Variant, p: &Personalisation) -> Rendered {
    Rendered {
        subject: fill_lines(&variant.subject, p).replace('\n', " "),
        text: fill_lines(&variant.text, p),
        sms: fill_lines(&variant.sms, p),
    }
}

/// The footer line every invitation email ends with (before the link).
pub const UNSUBSCRIBE_LINE: &str = "Don't want invitations like this? Unsubscribe:";

/// The text body with its visible unsubscribe link.
pub fn with_unsubscribe_footer(text: &str, url: &str) -> String {
    format!("{}\n\n--\n{UNSUBSCRIBE_LINE} {url}\n", text.trim_end())
}

/// The HTML body of a text message: the text escaped, line for line, and the unsubscribe
/// link as a visible anchor.
pub fn html_body(text: &str, unsubscribe_url: &str) -> String {
    let paragraphs: Vec<String> = text
        .trim_end()
        .split("\n\n")
        .map(|p| format!("<p>{}</p>", escape_html(p).replace('\n', "<br>\n")))
        .collect();
    let url = escape_html(unsubscribe_url);
    format!(
        "<!doctype html>\n<html><body>\n{}\n<hr>\n<p style=\"font-size:small\">{} <a href=\"{url}\">{url}</a></p>\n</body></html>\n",
        paragraphs.join("\n"),
        escape_html(UNSUBSCRIBE_LINE)
    )
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Fills each line, leaving out lines whose optional placeholders are empty (and blank
/// lines doubled by that).
fn fill_lines(template: &str, p: &Personalisation) -> String {
    let mut out: Vec<String> = Vec::new();
    for line in template.split('\n') {
        let skip = OPTIONAL
            .iter()
            .any(|name| line.contains(&format!("{{{name}}}")) && p.value(name).is_empty());
        if skip {
            continue;
        }
        let filled = fill(line, p);
        if filled.trim().is_empty() && out.last().is_some_and(|l| l.trim().is_empty()) {
            continue;
        }
        out.push(filled);
    }
    out.join("\n")
}

fn fill(line: &str, p: &Personalisation) -> String {
    let mut out = line.to_string();
    for name in PLACEHOLDERS {
        let key = format!("{{{name}}}");
        if out.contains(&key) {
            out = out.replace(&key, &p.value(name));
        }
    }
    out
}

fn unknown_placeholder(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after.find('}')?;
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Some(name.to_string());
        }
        rest = &after[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::parse(DEFAULT_CATALOG).expect("the shipped catalog is valid")
    }

    #[test]
    fn the_shipped_catalog_covers_every_flow() {
        let c = catalog();
        for flow in Flow::ALL {
            let t = c.choose("", *flow, None).unwrap();
            assert_eq!(t.flow, flow.as_str());
        }
    }

    #[test]
    fn choice_prefers_the_vendor_type_then_the_flow() {
        let c = catalog();
        let photo = c
            .choose("", Flow::SupplierToCouple, Some("PHOTOGRAPHER"))
            .unwrap();
        assert_eq!(photo.id, "supplier-to-couple-photographer");
        let venue = c.choose("", Flow::SupplierToCouple, Some("VENUE")).unwrap();
        assert_eq!(venue.id, "supplier-to-couple");
        assert_eq!(
            c.choose("nope", Flow::SupplierToCouple, None).unwrap_err(),
            ChoiceError::Unknown("nope".into())
        );
        assert!(matches!(
            c.choose("couple-to-couple", Flow::SupplierToCouple, None),
            Err(ChoiceError::WrongFlow { .. })
        ));
        assert_eq!(
            c.choose("couple-to-couple", Flow::CoupleToCouple, None)
                .unwrap()
                .id,
            "couple-to-couple"
        );
    }

    #[test]
    fn assignment_is_deterministic_and_follows_the_weights() {
        let c = catalog();
        let t = c.get("supplier-to-couple").unwrap();
        let id = "0190b3c4-0000-7000-8000-000000000001";
        assert_eq!(t.assign(id).name, t.assign(id).name);
        let mut a = 0;
        for i in 0..4000 {
            if t.assign(&format!("inv-{i}")).name == "A" {
                a += 1;
            }
        }
        // 50/50: a fair split within a few percent.
        assert!((1800..2200).contains(&a), "{a} of 4000 got A");
        let skewed = Template {
            id: "x".into(),
            flow: "COUPLE_TO_COUPLE".into(),
            vendor_type: None,
            variants: vec![
                Variant {
                    name: "control".into(),
                    weight: 9,
                    subject: String::new(),
                    text: String::new(),
                    sms: String::new(),
                },
                Variant {
                    name: "test".into(),
                    weight: 1,
                    subject: String::new(),
                    text: String::new(),
                    sms: String::new(),
                },
            ],
        };
        let tests = (0..5000)
            .filter(|i| skewed.assign(&format!("inv-{i}")).name == "test")
            .count();
        assert!((400..600).contains(&tests), "{tests} of 5000 got the 10% variant");
    }

    #[test]
    fn rendering_personalises_and_drops_empty_optional_lines() {
        let c = catalog();
        let v = c.get("supplier-to-couple").unwrap().variant("A").unwrap();
        let p = Personalisation {
            recipient_name: "Jamie".into(),
            referrer_name: "Ana".into(),
            business_name: "Ana Weddings".into(),
            wedding_date: NaiveDate::from_ymd_opt(2026, 11, 29),
            link: "http://x/r/LOVE-ABCDEF".into(),
            code: "LOVE-ABCDEF".into(),
            message: String::new(),
        };
        let r = render(v, &p);
        assert_eq!(r.subject, "Ana thinks you'll love planning with us");
        assert!(
            r.text
                .starts_with("Hi Jamie,\n\nAna from Ana Weddings invited you"),
            "{}",
            r.text
        );
        assert!(r.text.contains("Sunday 29 November 2026"), "{}", r.text);
        assert!(r.text.contains("http://x/r/LOVE-ABCDEF"));
        assert!(
            !r.text.contains("\n\n\n"),
            "no doubled blank line where the message was"
        );
        assert!(!r.text.contains('{'));
        let bare = render(v, &Personalisation::default());
        assert!(bare.text.starts_with("Hi there,"));
        assert!(!bare.text.contains("wedding on"), "{}", bare.text);
        assert_eq!(bare.subject, "A friend thinks you'll love planning with us");
    }

    #[test]
    fn bad_catalogs_are_named() {
        assert!(matches!(Catalog::parse("{"), Err(CatalogError::Shape(_))));
        let unknown = DEFAULT_CATALOG.replacen("{recipient_name}", "{recipient}", 1);
        assert!(matches!(
            Catalog::parse(&unknown),
            Err(CatalogError::Template { ref problem, .. }) if problem.contains("{recipient}")
        ));
        let zero = DEFAULT_CATALOG.replacen("\"weight\": 50", "\"weight\": 0", 1);
        assert!(matches!(
            Catalog::parse(&zero),
            Err(CatalogError::Template { .. })
        ));
        let missing = r#"{"templates": [{"id": "a", "flow": "COUPLE_TO_COUPLE", "variants": [{"name": "A", "weight": 1, "subject": "s", "text": "t", "sms": "m"}]}]}"#;
        assert!(matches!(
            Catalog::parse(missing),
            Err(CatalogError::MissingFlow(_))
        ));
    }

    #[test]
    fn the_unsubscribe_link_is_visible_in_both_bodies() {
        let url = "https://r.example/u/abc.123";
        let text = with_unsubscribe_footer("Hi <Sam>,\n\nJoin us & see.\n", url);
        assert!(text.ends_with(&format!("{UNSUBSCRIBE_LINE} {url}\n")), "{text}");
        let html = html_body("Hi <Sam>,\n\nJoin us & see.", url);
        assert!(html.contains(&format!("<a href=\"{url}\">{url}</a>")), "{html}");
        assert!(
            html.contains("<p>Hi &lt;Sam&gt;,</p>") && html.contains("Join us &amp; see."),
            "{html}"
        );
        let hostile = html_body("x", "https://r.example/u/\"><script>");
        assert!(!hostile.contains("<script>"), "{hostile}");
    }
}
