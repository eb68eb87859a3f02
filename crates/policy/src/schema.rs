//! The operator's declarations (resource types, actions and the scopes each action needs) and the
//! Cedar schema and built-in guard-rail policies that Steward generates from them and its model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::PolicyError;

/// Entity type of every principal: a Steward identity.
pub const PRINCIPAL_TYPE: &str = "Identity";
/// Entity type of actions (Cedar's convention).
pub const ACTION_TYPE: &str = "Action";
/// Id of the environment-isolation guard rail (also the name exceptions refer to).
pub const ENV_ISOLATION: &str = "steward.env-isolation";
/// Id of the scope-cap guard rail.
pub const SCOPE_CAP: &str = "steward.scope-cap";
/// Prefix reserved for built-in policies.
pub const RESERVED_PREFIX: &str = "steward.";

/// The type of a declared resource attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttrType {
    String,
    Long,
    Bool,
    /// A set of strings.
    StringSet,
    /// An IP address or CIDR range (Cedar `ipaddr`).
    Ipaddr,
}

/// A resource type the operator declares. Every resource type also has `env: String`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceTypeDecl {
    /// Attribute name → type. All declared attributes are required on a request's resource.
    pub attributes: BTreeMap<String, AttrType>,
}

/// An action the operator declares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionDecl {
    /// Resource types the action applies to (all declared types when empty).
    pub resource_types: Vec<String>,
    /// Scopes of which the principal's token must hold at least one for any policy to allow
    /// the action (the scope cap). Defaults to the action's own name.
    pub scopes: Vec<String>,
}

/// The operator's part of the schema: resource types and actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaConfig {
    pub resource_types: BTreeMap<String, ResourceTypeDecl>,
    pub actions: BTreeMap<String, ActionDecl>,
}

impl Default for SchemaConfig {
    /// One generic resource type `Resource` and the actions `read` and `write` (scopes `read`, `write`).
    fn default() -> Self {
        Self {
            resource_types: BTreeMap::from([("Resource".to_owned(), ResourceTypeDecl::default())]),
            actions: BTreeMap::from([
                ("read".to_owned(), ActionDecl::default()),
                ("write".to_owned(), ActionDecl::default()),
            ]),
        }
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// RFC 6749 §3.3 scope-token characters (no space, `"` or `\`), also used for action names.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Cedar keywords that cannot name a type or an attribute.
const RESERVED_WORDS: [&str; 12] = [
    "true",
    "false",
    "if",
    "then",
    "else",
    "in",
    "is",
    "like",
    "has",
    "principal",
    "action",
    "resource",
];

impl SchemaConfig {
    /// Checks names, references and the scope mapping.
    pub fn check(&self) -> Result<(), PolicyError> {
        let bad = |m: String| Err(PolicyError::Config(m));
        if self.resource_types.is_empty() {
            return bad("declare at least one resource type".into());
        }
        for (name, decl) in &self.resource_types {
            if !is_ident(name) || RESERVED_WORDS.contains(&name.as_str()) {
                return bad(format!(
                    "resource type {name:?} is not a Cedar identifier (letters, digits, '_')"
                ));
            }
            if name == PRINCIPAL_TYPE || name == ACTION_TYPE {
                return bad(format!("resource type name {name:?} is reserved"));
            }
            for attr in decl.attributes.keys() {
                if !is_ident(attr) || RESERVED_WORDS.contains(&attr.as_str()) {
                    return bad(format!(
                        "attribute {attr:?} of {name} is not a Cedar identifier"
                    ));
                }
                if attr == "env" {
                    return bad(format!(
                        "attribute env of {name} is built in (every resource has env: String)"
                    ));
                }
            }
        }
        for (name, a) in &self.actions {
            if !is_scope_token(name) {
                return bad(format!(
                    "action {name:?} must be 1 to 128 printable ASCII characters without spaces, '\"' or '\\'"
                ));
            }
            for t in &a.resource_types {
                if !self.resource_types.contains_key(t) {
                    return bad(format!(
                        "action {name} names undeclared resource type {t:?}"
                    ));
                }
            }
            for s in &a.scopes {
                if !is_scope_token(s) {
                    return bad(format!("action {name}: {s:?} is not a valid scope"));
                }
            }
        }
        Ok(())
    }

    /// The scopes any of which the action needs (its own name when none are declared).
    pub fn required_scopes<'a>(&'a self, action: &'a str) -> Option<Vec<&'a str>> {
        self.actions.get(action).map(|a| {
            if a.scopes.is_empty() {
                vec![action]
            } else {
                a.scopes.iter().map(String::as_str).collect()
            }
        })
    }

    /// The Cedar schema (JSON format) generated from Steward's model and these declarations.
    pub fn cedar_schema_json(&self) -> Value {
        let mut entity_types = serde_json::Map::new();
        let string = json!({"type": "String"});
        let string_set = json!({"type": "Set", "element": {"type": "String"}});
        entity_types.insert(
            PRINCIPAL_TYPE.into(),
            json!({
                "shape": {"type": "Record", "attributes": {
                    "name": string, "kind": string, "env": string, "owner": string,
                    "scopes": string_set, "exceptions": string_set,
                }},
                "tags": {"type": "String"},
            }),
        );
        for (name, decl) in &self.resource_types {
            let mut attrs = serde_json::Map::new();
            attrs.insert("env".into(), string.clone());
            for (a, t) in &decl.attributes {
                attrs.insert(a.clone(), attr_type_json(*t));
            }
            entity_types.insert(
                name.clone(),
                json!({"shape": {"type": "Record", "attributes": attrs}}),
            );
        }
        let context = json!({"type": "Record", "attributes": {
            "time": {"type": "Long"},
            "source_ip": {"type": "Extension", "name": "ipaddr", "required": false},
            "mtls": {"type": "Boolean"},
            "cert_bound": {"type": "Boolean"},
            "dpop_bound": {"type": "Boolean"},
            "via_token": {"type": "Boolean"},
        }});
        let mut actions = serde_json::Map::new();
        for (name, a) in &self.actions {
            let resources: Vec<&String> = if a.resource_types.is_empty() {
                self.resource_types.keys().collect()
            } else {
                a.resource_types.iter().collect()
            };
            actions.insert(
                name.clone(),
                json!({"appliesTo": {
                    "principalTypes": [PRINCIPAL_TYPE],
                    "resourceTypes": resources,
                    "context": context,
                }}),
            );
        }
        json!({"": {"entityTypes": entity_types, "actions": actions}})
    }

    /// The built-in guard rails: `(id, description, Cedar source)`.
    pub fn guard_rails(&self) -> Vec<(&'static str, &'static str, String)> {
        let env = format!(
            "// An identity may act only on resources of its own environment, unless an approved,\n\
             // unexpired exception for this guard rail names it.\n\
             forbid (principal, action, resource)\n\
             when {{ principal.env != resource.env }}\n\
             unless {{ principal.exceptions.contains(\"{ENV_ISOLATION}\") }};\n"
        );
        let mut cap = String::from(
            "// A token's scopes cap what any policy can allow: each action needs one of its scopes.\n\
             forbid (principal, action, resource)\n",
        );
        if self.actions.is_empty() {
            cap.push_str(";\n");
        } else {
            cap.push_str("unless {\n");
            let n = self.actions.len();
            for (i, name) in self.actions.keys().enumerate() {
                let scopes = self.required_scopes(name).unwrap_or_default();
                let list: Vec<String> = scopes.iter().map(|s| cedar_string(s)).collect();
                cap.push_str(&format!(
                    "  (action == {ACTION_TYPE}::{} && principal.scopes.containsAny([{}])){}\n",
                    cedar_string(name),
                    list.join(", "),
                    if i + 1 < n { " ||" } else { "" }
                ));
            }
            cap.push_str("};\n");
        }
        vec![
            (
                ENV_ISOLATION,
                "Built-in guard rail: environment isolation (exceptions apply).",
                env,
            ),
            (
                SCOPE_CAP,
                "Built-in guard rail: the token's scopes cap every allow.",
                cap,
            ),
        ]
    }
}

fn attr_type_json(t: AttrType) -> Value {
    match t {
        AttrType::String => json!({"type": "String"}),
        AttrType::Long => json!({"type": "Long"}),
        AttrType::Bool => json!({"type": "Boolean"}),
        AttrType::StringSet => json!({"type": "Set", "element": {"type": "String"}}),
        AttrType::Ipaddr => json!({"type": "Extension", "name": "ipaddr"}),
    }
}

/// A Cedar string literal.
pub(crate) fn cedar_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
