//! `google.protobuf.Timestamp` with the proto3 JSON mapping's canonical form: RFC 3339,
//! "Z"-normalised, with 0, 3, 6 or 9 fractional digits (`2026-12-03T13:00:00Z`).
//! pbjson-types' own Timestamp writes `+00:00`, which is RFC 3339 but not what proto3 JSON
//! (and every other proto3 JSON implementation) emits; the wire format is the same message.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Visitor};

#[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl ::prost::Name for Timestamp {
    const NAME: &'static str = "Timestamp";
    const PACKAGE: &'static str = "google.protobuf";

    fn type_url() -> String {
        "type.googleapis.com/google.protobuf.Timestamp".into()
    }
}

impl TryFrom<Timestamp> for DateTime<Utc> {
    type Error = &'static str;

    fn try_from(t: Timestamp) -> Result<Self, Self::Error> {
        let nanos = u32::try_from(t.nanos).map_err(|_| "nanos out of range")?;
        DateTime::from_timestamp(t.seconds, nanos).ok_or("timestamp out of range")
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Self {
            seconds: t.timestamp(),
            // Below one second, so it fits.
            nanos: t.timestamp_subsec_nanos() as i32,
        }
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t: DateTime<Utc> = (*self).try_into().map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

struct TimestampVisitor;

impl Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an RFC 3339 timestamp such as 2026-12-03T13:00:00Z")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
        let t = DateTime::parse_from_rfc3339(s)
            .map_err(|e| E::custom(format!("{s:?} is not an RFC 3339 timestamp ({e})")))?;
        Ok(t.with_timezone(&Utc).into())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TimestampVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(t: Timestamp) -> String {
        serde_json::to_string(&t).unwrap()
    }

    #[test]
    fn output_is_z_normalised_with_0_3_6_or_9_digits() {
        assert_eq!(
            json(Timestamp {
                seconds: 1_796_302_800,
                nanos: 0
            }),
            r#""2026-12-03T13:00:00Z""#
        );
        assert_eq!(
            json(Timestamp {
                seconds: 1_796_302_800,
                nanos: 120_000_000
            }),
            r#""2026-12-03T13:00:00.120Z""#
        );
        assert_eq!(
            json(Timestamp {
                seconds: 1_796_302_800,
                nanos: 1_000
            }),
            r#""2026-12-03T13:00:00.000001Z""#
        );
        assert_eq!(
            json(Timestamp { seconds: 0, nanos: 5 }),
            r#""1970-01-01T00:00:00.000000005Z""#
        );
    }

    #[test]
    fn input_takes_any_offset_and_names_what_is_wrong() {
        let t: Timestamp = serde_json::from_str(r#""2026-12-03T08:00:00-05:00""#).unwrap();
        assert_eq!(json(t), r#""2026-12-03T13:00:00Z""#);
        let e = serde_json::from_str::<Timestamp>(r#""next tuesday""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("next tuesday") && e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn out_of_range_values_fail_to_serialise_instead_of_lying() {
        assert!(
            serde_json::to_string(&Timestamp {
                seconds: 0,
                nanos: -1
            })
            .is_err()
        );
        assert!(
            serde_json::to_string(&Timestamp {
                seconds: i64::MAX,
                nanos: 0
            })
            .is_err()
        );
    }
}
