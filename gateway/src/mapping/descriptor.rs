//! The embedded proto descriptors, indexed by full name: the one source for query-parameter
//! mapping and the OpenAPI schemas, so neither can drift from the messages.

use std::{collections::HashMap, sync::LazyLock};

use prost::Message;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet, MethodDescriptorProto,
    field_descriptor_proto::{Label, Type},
};

#[derive(Default)]
pub struct Descriptors {
    pub messages: HashMap<String, DescriptorProto>,
    pub enums: HashMap<String, EnumDescriptorProto>,
    methods: HashMap<(String, String), MethodDescriptorProto>,
    /// Leading comments by element: message name, or `message.field_name`.
    comments: HashMap<String, String>,
}

static DESCRIPTORS: LazyLock<Descriptors> = LazyLock::new(|| {
    // The set is compiled into the binary by referral-proto's build script; a decode failure
    // would be a build defect, and an empty index then shows up in the OpenAPI tests.
    let set = FileDescriptorSet::decode(referral_proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
    Descriptors::index(&set)
});

pub fn get() -> &'static Descriptors {
    &DESCRIPTORS
}

/// What a field holds, as far as JSON cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    String,
    Bytes,
    Bool,
    Int32,
    Uint32,
    /// 64-bit integers travel as strings in proto3 JSON.
    Int64,
    Uint64,
    Float,
    Double,
    Enum(String),
    Message(String),
    Map(Box<Kind>, Box<Kind>),
}

impl Kind {
    /// Well-known types that JSON renders as a single string.
    pub fn is_scalar_like(&self) -> bool {
        match self {
            Kind::Message(name) => well_known_scalar(name).is_some(),
            Kind::Map(..) => false,
            _ => true,
        }
    }
}

/// JSON type and format of the well-known types rendered as scalars.
pub fn well_known_scalar(name: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match name {
        "google.protobuf.Timestamp" => ("string", Some("date-time")),
        "google.protobuf.Duration" => ("string", Some("duration")),
        "google.protobuf.StringValue" => ("string", None),
        "google.protobuf.BytesValue" => ("string", Some("byte")),
        "google.protobuf.BoolValue" => ("boolean", None),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => ("integer", Some("int32")),
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => ("string", Some("int64")),
        "google.protobuf.FloatValue" | "google.protobuf.DoubleValue" => ("number", None),
        "google.protobuf.FieldMask" => ("string", None),
        _ => return None,
    })
}

#[derive(Debug, Clone)]
pub struct Field {
    /// The proto name, snake_case.
    pub name: String,
    /// The lowerCamelCase JSON name.
    pub json_name: String,
    pub kind: Kind,
    pub repeated: bool,
    pub optional: bool,
    pub comment: Option<String>,
}

impl Descriptors {
    fn index(set: &FileDescriptorSet) -> Self {
        let mut d = Descriptors::default();
        for file in &set.file {
            let package = file.package();
            let mut comments_by_path: HashMap<Vec<i32>, String> = HashMap::new();
            if let Some(info) = &file.source_code_info {
                for loc in &info.location {
                    if let Some(c) = loc
                        .leading_comments
                        .as_deref()
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                    {
                        comments_by_path.insert(loc.path.clone(), c.to_string());
                    }
                }
            }
            for (i, msg) in file.message_type.iter().enumerate() {
                // 4 = FileDescriptorProto.message_type
                d.add_message(package, msg, vec![4, i as i32], &comments_by_path);
            }
            for e in &file.enum_type {
                d.enums.insert(format!("{package}.{}", e.name()), e.clone());
            }
            for svc in &file.service {
                for m in &svc.method {
                    let key = (format!("{package}.{}", svc.name()), m.name().to_string());
                    d.methods.insert(key, m.clone());
                }
            }
        }
        d
    }

    fn add_message(
        &mut self,
        scope: &str,
        msg: &DescriptorProto,
        path: Vec<i32>,
        comments: &HashMap<Vec<i32>, String>,
    ) {
        let full = format!("{scope}.{}", msg.name());
        if let Some(c) = comments.get(&path) {
            self.comments.insert(full.clone(), c.clone());
        }
        for (i, f) in msg.field.iter().enumerate() {
            let mut p = path.clone();
            p.extend([2, i as i32]); // 2 = DescriptorProto.field
            if let Some(c) = comments.get(&p) {
                self.comments.insert(format!("{full}.{}", f.name()), c.clone());
            }
        }
        for (i, nested) in msg.nested_type.iter().enumerate() {
            let mut p = path.clone();
            p.extend([3, i as i32]); // 3 = DescriptorProto.nested_type
            self.add_message(&full, nested, p, comments);
        }
        for e in &msg.enum_type {
            self.enums.insert(format!("{full}.{}", e.name()), e.clone());
        }
        self.messages.insert(full, msg.clone());
    }

    /// Input and output message names of `service` (full name) `method`, and whether the
    /// server streams.
    pub fn method(&self, service: &str, method: &str) -> Option<(String, String, bool)> {
        self.methods
            .get(&(service.to_string(), method.to_string()))
            .map(|m| {
                (
                    strip(m.input_type()),
                    strip(m.output_type()),
                    m.server_streaming(),
                )
            })
    }

    pub fn comment(&self, element: &str) -> Option<&str> {
        self.comments.get(element).map(String::as_str)
    }

    /// The fields of a message as JSON sees them.
    pub fn fields(&self, message: &str) -> Vec<Field> {
        let Some(msg) = self.messages.get(message) else {
            return Vec::new();
        };
        msg.field
            .iter()
            .map(|f| {
                let (kind, map) = self.kind_of(f);
                Field {
                    name: f.name().to_string(),
                    json_name: f.json_name.clone().unwrap_or_else(|| lower_camel(f.name())),
                    repeated: f.label() == Label::Repeated && !map,
                    optional: f.proto3_optional(),
                    comment: self
                        .comment(&format!("{message}.{}", f.name()))
                        .map(str::to_string),
                    kind,
                }
            })
            .collect()
    }

    /// The field's kind, and whether it is a map (a repeated map-entry message).
    fn kind_of(&self, f: &FieldDescriptorProto) -> (Kind, bool) {
        let kind = match f.r#type() {
            Type::String => Kind::String,
            Type::Bytes => Kind::Bytes,
            Type::Bool => Kind::Bool,
            Type::Int32 | Type::Sint32 | Type::Sfixed32 => Kind::Int32,
            Type::Uint32 | Type::Fixed32 => Kind::Uint32,
            Type::Int64 | Type::Sint64 | Type::Sfixed64 => Kind::Int64,
            Type::Uint64 | Type::Fixed64 => Kind::Uint64,
            Type::Float => Kind::Float,
            Type::Double => Kind::Double,
            Type::Enum => Kind::Enum(strip(f.type_name())),
            Type::Message | Type::Group => {
                let name = strip(f.type_name());
                if let Some(entry) = self
                    .messages
                    .get(&name)
                    .filter(|m| m.options.as_ref().is_some_and(|o| o.map_entry()))
                {
                    let key = entry
                        .field
                        .first()
                        .map(|k| self.kind_of(k).0)
                        .unwrap_or(Kind::String);
                    let value = entry
                        .field
                        .get(1)
                        .map(|v| self.kind_of(v).0)
                        .unwrap_or(Kind::String);
                    return (Kind::Map(Box::new(key), Box::new(value)), true);
                }
                Kind::Message(name)
            }
        };
        (kind, false)
    }

    /// The value names of an enum, in declaration order; none for a name the set does not
    /// hold (every enum a message names is in it: both come from the same compiled protos).
    pub fn enum_values(&self, name: &str) -> Vec<String> {
        self.enums
            .get(name)
            .map(|e| e.value.iter().map(|v| v.name().to_string()).collect())
            .unwrap_or_default()
    }
}

fn strip(name: &str) -> String {
    name.trim_start_matches('.').to_string()
}

/// protoc's json_name rule, for descriptors that lack it.
fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_fields_and_methods_are_indexed() {
        let d = get();
        let (input, output, streaming) = d
            .method("referral.invite.v1.InviteService", "CreateInvitation")
            .unwrap();
        assert_eq!(input, "referral.invite.v1.CreateInvitationRequest");
        assert_eq!(output, "referral.invite.v1.Invitation");
        assert!(!streaming);
        assert!(
            d.method("referral.analytics.v1.AnalyticsService", "StreamEvents")
                .unwrap()
                .2
        );
        let fields = d.fields("referral.invite.v1.CreateInvitationRequest");
        let f = fields.iter().find(|f| f.name == "referrer_id").unwrap();
        assert_eq!(f.json_name, "referrerId");
        let send_at = fields.iter().find(|f| f.name == "send_at").unwrap();
        assert_eq!(send_at.kind, Kind::Message("google.protobuf.Timestamp".into()));
        assert!(send_at.kind.is_scalar_like());
        let receipt = d.fields("referral.common.v1.PrivacyReceipt");
        let map = receipt.iter().find(|f| f.name == "counts").unwrap();
        assert_eq!(map.kind, Kind::Map(Box::new(Kind::String), Box::new(Kind::Int64)));
        assert!(!map.repeated);
        assert!(
            d.enum_values("referral.incentive.v1.Payout.Status")
                .contains(&"PAID".to_string())
        );
        assert_eq!(lower_camel("page_size"), "pageSize");
    }
}
