//! YAML in and out, one way for the whole crate (snapshots, the operator config, the CRD), with
//! errors that name the field and the line: `kmsKey.colour: unknown field ... at line 12,
//! column 3`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A YAML text that does not read as the expected type: where, and what is wrong (the message
/// ends with the line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// The field path, `role.inlinePolicies[0].document`; empty for the document itself.
    pub path: String,
    pub message: String,
}

/// Reads one YAML document (JSON is YAML too). Plain scalars are read as YAML 1.2 reads them:
/// `yes`, `on`, `012` and `1_000` stay strings where a string is possible (account ids and tag
/// values keep their text).
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        // One-line messages: the caller adds the file name, and the message has the line.
        with_snippet: false,
    };
    let mut path = String::new();
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| YamlError {
        path: clean_path(&path),
        message: e.render_with_formatter(&serde_saphyr::UserMessageFormatter),
    })
}

/// Writes a value as a YAML document. A long single-line string stays on one line (folding it
/// over several would look, to a reader of the file, like the line breaks it does not have);
/// a string with line breaks is a literal block.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
    let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
    serde_saphyr::to_string_with_options(value, options).map_err(|e| e.to_string())
}

/// The path without the segments `serde_path_to_error` cannot name (`?`, the root `.`).
fn clean_path(path: &str) -> String {
    let mut p = path;
    while let Some(rest) = p.strip_suffix('?') {
        p = rest.strip_suffix('.').unwrap_or(rest);
    }
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for YamlError {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Key {
        key_state: String,
        #[serde(default)]
        tags: BTreeMap<String, String>,
        #[serde(default)]
        enabled: Option<bool>,
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Doc {
        kms_key: Key,
        #[serde(default)]
        any: Option<serde_json::Value>,
    }

    #[test]
    fn errors_name_the_field_and_the_line() {
        let e = from_str::<Doc>("kmsKey:\n  keyState: Enabled\n  colour: blue\n").unwrap_err();
        assert_eq!(e.path, "kmsKey.colour");
        assert!(e.message.contains("colour"), "{e}");
        assert!(e.message.contains("line 3"), "{e}");
        assert!(e.to_string().starts_with("kmsKey.colour: "), "{e}");

        let e = from_str::<Doc>("kmsKey: {keyState: [a]}\n").unwrap_err();
        assert_eq!(e.path, "kmsKey.keyState");
        assert!(e.message.contains("line 1"), "{e}");

        let e = from_str::<Doc>("kmsKey: {keyState: a\nany: 1\n").unwrap_err();
        assert_eq!(e.path, "kmsKey");
        assert!(e.message.contains("line 2"), "{e}");

        let e = from_str::<Doc>("{}").unwrap_err();
        assert_eq!(e.path, "");
        assert!(e.message.contains("kmsKey"), "{e}");

        assert!(from_str::<Doc>(": not yaml [").is_err());
        assert!(from_str::<Doc>("").is_err());
        let e = from_str::<Doc>("kmsKey: {keyState: a}\nkmsKey: {keyState: b}\n").unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");
    }

    #[test]
    fn scalars_read_as_yaml_1_2_and_round_trip() {
        let text = "kmsKey:\n  keyState: 012345678901\n  tags: {a: yes, b: off, c: 1_000}\n  enabled: true\nany: {n: 111111111111, s: on, v: 2012-10-17, z: 012}\n";
        let d: Doc = from_str(text).unwrap();
        assert_eq!(d.kms_key.key_state, "012345678901");
        assert_eq!(d.kms_key.tags["a"], "yes");
        assert_eq!(d.kms_key.tags["b"], "off");
        assert_eq!(d.kms_key.tags["c"], "1_000");
        assert_eq!(d.kms_key.enabled, Some(true));
        let any = d.any.as_ref().unwrap();
        assert_eq!(any["n"], 111111111111u64);
        assert_eq!(any["s"], "on");
        assert_eq!(any["v"], "2012-10-17");
        assert_eq!(any["z"], "012");
        assert!(from_str::<Doc>("kmsKey: {keyState: a, enabled: yes}").is_err());

        let back: Doc = from_str(&to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }
}
