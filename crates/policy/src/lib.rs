//! Steward's policy decision point: the Cedar schema generated from Steward's model, policy
//! validation with positions, the built-in guard rails, and evaluation (deny by default).
//!
//! ```
//! use steward_policy::{Base, Context, PolicySource, Principal, Request, Resource, SchemaConfig};
//!
//! let base = Base::new(SchemaConfig::default()).unwrap();
//! let engine = base
//!     .compile(&[PolicySource::new("readers", r#"permit (principal, action == Action::"read", resource);"#)])
//!     .unwrap();
//! let mut req = Request {
//!     principal: Principal {
//!         id: "0190c0de-0000-7000-8000-000000000001".into(),
//!         env: "prod".into(),
//!         scopes: vec!["read".into()],
//!         ..Principal::default()
//!     },
//!     action: "read".into(),
//!     resource: Resource::new("Resource", "doc-1", "prod"),
//!     context: Context::default(),
//! };
//! assert!(engine.evaluate(&req).allow);
//! // Deny by default: no policy permits `write`.
//! req.action = "write".into();
//! req.principal.scopes.push("write".into());
//! assert!(!engine.evaluate(&req).allow);
//! ```
#![forbid(unsafe_code)]

mod diff;
mod index;
mod schema;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Authorizer, Decision as CedarDecision, Effect, Entities, Entity, EntityUid,
    Policy, PolicyId, PolicySet, ResourceConstraint, RestrictedExpression, Schema, ValidationMode,
    Validator,
};
use miette::Diagnostic;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use diff::line_diff;
pub use schema::{
    ACTION_TYPE, ActionDecl, AttrType, ENV_ISOLATION, PRINCIPAL_TYPE, RESERVED_PREFIX,
    ResourceTypeDecl, SCOPE_CAP, SchemaConfig,
};

/// Errors of the policy engine.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The operator's declarations are unusable.
    #[error("authorization schema: {0}")]
    Config(String),
    /// One or more policies failed to parse or validate.
    #[error("{}", problems_text(.0))]
    Invalid(Vec<PolicyProblem>),
}

fn problems_text(p: &[PolicyProblem]) -> String {
    p.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A parse or validation problem in one policy, with its position in that policy's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyProblem {
    pub policy_id: String,
    pub message: String,
    /// 1-based line in the policy's source, when the problem has a position.
    pub line: Option<u32>,
    /// 1-based column (in characters) in the policy's source.
    pub column: Option<u32>,
}

impl std::fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(
                f,
                "policy {} at line {l}, column {c}: {}",
                self.policy_id, self.message
            ),
            _ => write!(f, "policy {}: {}", self.policy_id, self.message),
        }
    }
}

/// A policy as stored: its id and Cedar source (exactly one `permit` or `forbid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySource {
    pub id: String,
    pub source: String,
}

impl PolicySource {
    pub fn new(id: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            source: source.into(),
        }
    }
}

/// A built-in guard rail: readable, always part of the set, never editable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardRail {
    pub id: &'static str,
    pub description: &'static str,
    pub source: String,
}

/// Checks an operator policy id: 1–128 of `A-Z a-z 0-9 . _ : -`, not reserved.
pub fn check_policy_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(format!(
            "policy id {id:?} must be 1 to 128 characters of letters, digits, '.', '_', ':' or '-'"
        ));
    }
    if id.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "policy ids starting with {RESERVED_PREFIX:?} are reserved for built-in guard rails"
        ));
    }
    Ok(())
}

/// The schema, validator and guard rails for one set of declarations. Cheap to share (`Arc`).
pub struct Base {
    config: SchemaConfig,
    validator: Validator,
    guard_rails: Vec<GuardRail>,
    guard_policies: Vec<Policy>,
    /// The principal, action and every declared resource type, parsed once: Cedar parses a
    /// type name with its full grammar, which cost more than evaluating the policies did.
    type_names: HashMap<String, cedar_policy::EntityTypeName>,
    /// `ip("…")` values by their text. Cedar parses the extension's name anew for every value it
    /// builds, which cost as much as the rest of a request; source addresses repeat.
    ips: IpValues,
}

impl std::fmt::Debug for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Base")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Base {
    /// Builds the schema from the declarations and checks the guard rails against it.
    pub fn new(config: SchemaConfig) -> Result<Arc<Self>, PolicyError> {
        config.check()?;
        let schema = Schema::from_json_value(config.cedar_schema_json())
            .map_err(|e| PolicyError::Config(format!("generated schema is invalid: {e}")))?;
        let validator = Validator::new(schema);
        let mut type_names = HashMap::new();
        for kind in [PRINCIPAL_TYPE, ACTION_TYPE]
            .into_iter()
            .chain(config.resource_types.keys().map(String::as_str))
        {
            let name = cedar_policy::EntityTypeName::from_str(kind)
                .map_err(|_| PolicyError::Config(format!("{kind:?} is not an entity type name")))?;
            type_names.insert(kind.to_owned(), name);
        }
        let mut base = Self {
            guard_rails: Vec::new(),
            guard_policies: Vec::new(),
            config,
            validator,
            type_names,
            ips: IpValues::default(),
        };
        for (id, description, source) in base.config.guard_rails() {
            let policy = base
                .check(id, &source)
                .map_err(|p| PolicyError::Config(format!("guard rail: {}", problems_text(&p))))?;
            base.guard_policies.push(policy);
            base.guard_rails.push(GuardRail {
                id,
                description,
                source,
            });
        }
        Ok(Arc::new(base))
    }

    /// The entity `kind::"id"`, with the type name parsed once at construction when declared.
    fn uid(&self, kind: &str, id: &str) -> Result<EntityUid, String> {
        match self.type_names.get(kind) {
            Some(t) => Ok(EntityUid::from_type_name_and_id(
                t.clone(),
                cedar_policy::EntityId::new(id),
            )),
            None => uid(kind, id),
        }
    }

    pub fn config(&self) -> &SchemaConfig {
        &self.config
    }

    pub fn guard_rails(&self) -> &[GuardRail] {
        &self.guard_rails
    }

    pub fn is_guard_rail(&self, id: &str) -> bool {
        self.guard_rails.iter().any(|g| g.id == id)
    }

    /// The generated schema in Cedar's human-readable schema syntax.
    pub fn schema_text(&self) -> String {
        cedar_policy::SchemaFragment::from_json_value(self.config.cedar_schema_json())
            .ok()
            .and_then(|f| f.to_cedarschema().ok())
            .unwrap_or_else(|| self.config.cedar_schema_json().to_string())
    }

    /// The generated schema in Cedar's JSON schema format.
    pub fn schema_json(&self) -> Value {
        self.config.cedar_schema_json()
    }

    /// Parses and validates one policy (strict mode). Problems carry their line and column.
    pub fn check(&self, id: &str, source: &str) -> Result<Policy, Vec<PolicyProblem>> {
        let problem = |message: String, offset: Option<usize>| {
            let (line, column) = offset
                .map(|o| line_col(source, o))
                .map_or((None, None), |(l, c)| (Some(l), Some(c)));
            PolicyProblem {
                policy_id: id.to_owned(),
                message,
                line,
                column,
            }
        };
        let set = PolicySet::from_str(source).map_err(|e| {
            e.iter()
                .map(|d| problem(diag_message(d), first_offset(d)))
                .collect::<Vec<_>>()
        })?;
        if set.num_of_templates() > 0 {
            return Err(vec![problem(
                "policy templates (?principal, ?resource) are not supported".into(),
                None,
            )]);
        }
        if set.num_of_policies() != 1 {
            return Err(vec![problem(
                format!(
                    "a policy must hold exactly one permit or forbid statement (found {})",
                    set.num_of_policies()
                ),
                None,
            )]);
        }
        let policy = Policy::parse(Some(PolicyId::new(id)), source).map_err(|e| {
            e.iter()
                .map(|d| problem(diag_message(d), first_offset(d)))
                .collect::<Vec<_>>()
        })?;
        let mut single = PolicySet::new();
        single
            .add(policy.clone())
            .map_err(|e| vec![problem(e.to_string(), None)])?;
        let result = self.validator.validate(&single, ValidationMode::Strict);
        let problems: Vec<PolicyProblem> = result
            .validation_errors()
            .map(|e| problem(diag_message(e), first_offset(e)))
            .collect();
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(problems)
        }
    }

    /// Compiles the guard rails plus `policies` into an engine. Every problem of every policy
    /// is reported, each with its position.
    pub fn compile(self: &Arc<Self>, policies: &[PolicySource]) -> Result<Engine, PolicyError> {
        let mut set = PolicySet::new();
        let mut problems = Vec::new();
        let mut forbids = HashSet::new();
        for p in &self.guard_policies {
            forbids.insert(p.id().to_string());
            set.add(p.clone()).map_err(|e| {
                PolicyError::Config(format!("cannot add guard rail {}: {e}", p.id()))
            })?;
        }
        for p in policies {
            if let Err(e) = check_policy_id(&p.id) {
                problems.push(PolicyProblem {
                    policy_id: p.id.clone(),
                    message: e,
                    line: None,
                    column: None,
                });
                continue;
            }
            match self.check(&p.id, &p.source) {
                Ok(policy) => {
                    if policy.effect() == Effect::Forbid {
                        forbids.insert(p.id.clone());
                    }
                    if let Err(e) = set.add(policy) {
                        problems.push(PolicyProblem {
                            policy_id: p.id.clone(),
                            message: e.to_string(),
                            line: None,
                            column: None,
                        });
                    }
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        let slices = self.slice(&set)?;
        Ok(Engine {
            base: Arc::clone(self),
            set,
            slices,
            forbids,
            authorizer: Authorizer::new(),
        })
    }

    /// Splits `set` by (action, resource type): a policy joins every slice its scope admits.
    fn slice(&self, set: &PolicySet) -> Result<Slices, PolicyError> {
        let mut slices = HashMap::new();
        for (action, decl) in &self.config.actions {
            let auid = uid(ACTION_TYPE, action).map_err(PolicyError::Config)?;
            let types: Vec<&String> = if decl.resource_types.is_empty() {
                self.config.resource_types.keys().collect()
            } else {
                decl.resource_types.iter().collect()
            };
            for rtype in types {
                let mut slice = PolicySet::new();
                for p in set.policies() {
                    let action_ok = match p.action_constraint() {
                        ActionConstraint::Any => true,
                        ActionConstraint::Eq(a) => a == auid,
                        // Actions have no groups in Steward's schema: `in` means one of them.
                        ActionConstraint::In(v) => v.contains(&auid),
                    };
                    let resource_ok = match p.resource_constraint() {
                        ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => {
                            t.to_string() == *rtype
                        }
                        ResourceConstraint::Eq(e) => e.type_name().to_string() == *rtype,
                        _ => true,
                    };
                    if action_ok && resource_ok {
                        slice.add(p.clone()).map_err(|e| {
                            PolicyError::Config(format!("cannot slice the policy set: {e}"))
                        })?;
                    }
                }
                // Attributes every request of this type carries (checked before evaluation).
                let mut guaranteed: HashSet<String> = self
                    .config
                    .resource_types
                    .get(rtype)
                    .map(|d| d.attributes.keys().cloned().collect())
                    .unwrap_or_default();
                guaranteed.insert("env".to_owned());
                let idx = index::build(&slice, &guaranteed).map_err(|e| {
                    PolicyError::Config(format!("cannot index the policy set: {e}"))
                })?;
                slices.insert((action.clone(), rtype.clone()), (slice, idx));
            }
        }
        Ok(slices)
    }
}

/// 1-based line and character column of byte `offset` in `src`.
fn line_col(src: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

fn first_offset(d: &(impl Diagnostic + ?Sized)) -> Option<usize> {
    d.labels()
        .and_then(|mut l| l.next())
        .map(|l| l.offset())
        .or_else(|| {
            d.related()
                .and_then(|mut r| r.next())
                .and_then(first_offset)
        })
}

fn diag_message(d: &(impl Diagnostic + std::fmt::Display + ?Sized)) -> String {
    match d.help() {
        Some(h) => format!("{d} ({h})"),
        None => d.to_string(),
    }
}

/// The principal of a decision: a Steward identity as it is at the moment of the decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Identity id.
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    pub env: String,
    /// Owner id.
    #[serde(default)]
    pub owner: String,
    /// The scopes of the presented token (or the identity's grant when decided by identity id).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Labels, exposed to policies as Cedar entity tags (`principal.getTag("team")`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Guard rails with an approved, unexpired exception for this identity at decision time.
    #[serde(default)]
    pub exceptions: Vec<String>,
}

/// The resource of a decision, as the resource server describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// A declared resource type.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    /// Attributes, including `env`.
    #[serde(default)]
    pub attributes: serde_json::Map<String, Value>,
}

impl Resource {
    pub fn new(kind: impl Into<String>, id: impl Into<String>, env: impl Into<String>) -> Self {
        let mut attributes = serde_json::Map::new();
        attributes.insert("env".into(), Value::String(env.into()));
        Self {
            kind: kind.into(),
            id: id.into(),
            attributes,
        }
    }
}

/// The context of a decision (`context.*` in policies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// Decision time, Unix seconds (the server's clock).
    #[serde(default)]
    pub time: i64,
    /// The caller's source address as the resource server saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The request reached the resource server over mutual TLS.
    #[serde(default)]
    pub mtls: bool,
    /// The token is certificate-bound and the presented client certificate matches it.
    #[serde(default)]
    pub cert_bound: bool,
    /// The token is DPoP-bound.
    #[serde(default)]
    pub dpop_bound: bool,
    /// The principal was established from an access token (rather than named by id).
    #[serde(default)]
    pub via_token: bool,
}

/// Everything a decision depends on. Stored with each decision, so it can be re-evaluated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub principal: Principal,
    pub action: String,
    pub resource: Resource,
    pub context: Context,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    /// Ids of the policies that determined the decision (empty for the default deny).
    pub policies: Vec<String>,
    pub errors: Vec<String>,
}

impl Decision {
    pub fn deny(error: impl Into<String>) -> Self {
        Self {
            allow: false,
            policies: Vec::new(),
            errors: vec![error.into()],
        }
    }
}

/// (action, resource type) → that slice's policies and their attribute index, if any.
type Slices = HashMap<(String, String), (PolicySet, Option<index::AttrIndex>)>;

/// A compiled policy set (guard rails + operator policies), ready to evaluate.
pub struct Engine {
    base: Arc<Base>,
    set: PolicySet,
    /// (action, resource type) → the policies whose scope can match such a request. Cedar
    /// evaluates every policy of a set; slicing by scope keeps that to the relevant ones, and
    /// each slice's index (see `index`) narrows it by one resource attribute's value.
    slices: Slices,
    forbids: HashSet<String>,
    authorizer: Authorizer,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("policies", &self.set.num_of_policies())
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn base(&self) -> &Arc<Base> {
        &self.base
    }

    /// Number of policies, guard rails included.
    pub fn len(&self) -> usize {
        self.set.num_of_policies()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The same engine without the per-slice attribute indexes (for equivalence tests).
    #[cfg(test)]
    pub(crate) fn without_indexes(mut self) -> Self {
        for slice in self.slices.values_mut() {
            slice.1 = None;
        }
        self
    }

    /// Decides `req`. Deny by default; any `forbid` that is satisfied wins. Fails closed: a
    /// malformed request, or an error while evaluating a `forbid` policy, denies.
    pub fn evaluate(&self, req: &Request) -> Decision {
        match self.try_evaluate(req) {
            Ok(d) => d,
            Err(e) => Decision::deny(e),
        }
    }

    fn try_evaluate(&self, req: &Request) -> Result<Decision, String> {
        let config = &self.base.config;
        let Some(decl) = config.actions.get(&req.action) else {
            return Err(format!("unknown action {:?}", req.action));
        };
        let Some(rdecl) = config.resource_types.get(&req.resource.kind) else {
            return Err(format!("unknown resource type {:?}", req.resource.kind));
        };
        if !decl.resource_types.is_empty() && !decl.resource_types.contains(&req.resource.kind) {
            return Err(format!(
                "action {:?} does not apply to resource type {:?}",
                req.action, req.resource.kind
            ));
        }
        let slice = match self
            .slices
            .get(&(req.action.clone(), req.resource.kind.clone()))
        {
            Some((all, Some(idx))) => {
                let v = req
                    .resource
                    .attributes
                    .get(&idx.attr)
                    .and_then(Value::as_str);
                idx.select(v, all)
            }
            Some((all, None)) => all,
            None => &self.set,
        };
        // The request is checked against the declarations here (cheaper than Cedar's
        // schema-based entity parsing, and with clearer messages).
        match req.resource.attributes.get("env") {
            Some(Value::String(_)) => {}
            _ => return Err("the resource must have attribute env (a string)".into()),
        }
        let mut attrs = Vec::with_capacity(req.resource.attributes.len());
        for (name, value) in &req.resource.attributes {
            let t = if name == "env" {
                AttrType::String
            } else {
                *rdecl.attributes.get(name).ok_or_else(|| {
                    format!(
                        "resource type {} has no attribute {name:?}",
                        req.resource.kind
                    )
                })?
            };
            attrs.push((name.clone(), restricted(&self.base.ips, name, t, value)?));
        }
        if let Some(missing) = rdecl
            .attributes
            .keys()
            .find(|k| !req.resource.attributes.contains_key(*k))
        {
            return Err(format!(
                "the resource must have attribute {missing:?} (declared on {})",
                req.resource.kind
            ));
        }
        let principal = self.base.uid(PRINCIPAL_TYPE, &req.principal.id)?;
        let action = self.base.uid(ACTION_TYPE, &req.action)?;
        let resource = self.base.uid(&req.resource.kind, &req.resource.id)?;
        let p = &req.principal;
        let string = |s: &String| RestrictedExpression::new_string(s.clone());
        let strings = |v: &[String]| RestrictedExpression::new_set(v.iter().map(string));
        let principal_entity = Entity::new_with_tags(
            principal.clone(),
            [
                ("name".to_owned(), string(&p.name)),
                ("kind".to_owned(), string(&p.kind)),
                ("env".to_owned(), string(&p.env)),
                ("owner".to_owned(), string(&p.owner)),
                ("scopes".to_owned(), strings(&p.scopes)),
                ("exceptions".to_owned(), strings(&p.exceptions)),
            ],
            [],
            p.labels.iter().map(|(k, v)| (k.clone(), string(v))),
        )
        .map_err(|e| format!("principal: {e}"))?;
        let resource_entity = Entity::new_with_tags(resource.clone(), attrs, [], [])
            .map_err(|e| format!("resource: {e}"))?;
        let entities = Entities::from_entities([principal_entity, resource_entity], None)
            .map_err(|e| format!("request entities: {}", diag_message(&e)))?;
        let c = &req.context;
        let mut ctx = vec![
            ("time".to_owned(), RestrictedExpression::new_long(c.time)),
            ("mtls".to_owned(), RestrictedExpression::new_bool(c.mtls)),
            (
                "cert_bound".to_owned(),
                RestrictedExpression::new_bool(c.cert_bound),
            ),
            (
                "dpop_bound".to_owned(),
                RestrictedExpression::new_bool(c.dpop_bound),
            ),
            (
                "via_token".to_owned(),
                RestrictedExpression::new_bool(c.via_token),
            ),
        ];
        if let Some(ip) = &c.source_ip {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err("context source_ip is not an IP address".into());
            }
            ctx.push(("source_ip".to_owned(), self.base.ips.get(ip)));
        }
        let context = cedar_policy::Context::from_pairs(ctx)
            .map_err(|e| format!("request context: {}", diag_message(&e)))?;
        let request = cedar_policy::Request::new(principal, action, resource, context, None)
            .map_err(|e| format!("request: {}", diag_message(&e)))?;
        let response = self.authorizer.is_authorized(&request, slice, &entities);
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        let mut errors = Vec::new();
        let mut forbid_failed = Vec::new();
        for e in response.diagnostics().errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(pe) = e;
            let id = pe.policy_id().to_string();
            errors.push(e.to_string());
            if self.forbids.contains(&id) {
                forbid_failed.push(id);
            }
        }
        let mut allow = response.decision() == CedarDecision::Allow;
        if allow && !forbid_failed.is_empty() {
            allow = false;
            policies = forbid_failed;
        }
        policies.sort();
        Ok(Decision {
            allow,
            policies,
            errors,
        })
    }
}

/// A resource attribute as a Cedar value of its declared type.
fn restricted(
    ips: &IpValues,
    name: &str,
    t: AttrType,
    v: &Value,
) -> Result<RestrictedExpression, String> {
    let bad = || format!("resource attribute {name:?} must be {}", attr_type_name(t));
    Ok(match (t, v) {
        (AttrType::String, Value::String(s)) => RestrictedExpression::new_string(s.clone()),
        (AttrType::Long, Value::Number(n)) => {
            RestrictedExpression::new_long(n.as_i64().ok_or_else(bad)?)
        }
        (AttrType::Bool, Value::Bool(b)) => RestrictedExpression::new_bool(*b),
        (AttrType::StringSet, Value::Array(items)) => RestrictedExpression::new_set(
            items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(|s| RestrictedExpression::new_string(s.to_owned()))
                        .ok_or_else(bad)
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        (AttrType::Ipaddr, Value::String(s)) => {
            let addr = s.split('/').next().unwrap_or(s);
            if addr.parse::<std::net::IpAddr>().is_err() {
                return Err(bad());
            }
            ips.get(s)
        }
        _ => return Err(bad()),
    })
}

/// A bounded memo of Cedar `ip` extension values (emptied when full).
#[derive(Default)]
struct IpValues(std::sync::Mutex<HashMap<String, RestrictedExpression>>);

impl IpValues {
    const CAPACITY: usize = 4096;

    /// The `ip(text)` value; `text` must already be checked as an address or range.
    fn get(&self, text: &str) -> RestrictedExpression {
        let mut memo = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = memo.get(text) {
            return v.clone();
        }
        let v = RestrictedExpression::new_ip(text);
        if memo.len() >= Self::CAPACITY {
            memo.clear();
        }
        memo.insert(text.to_owned(), v.clone());
        v
    }
}

fn attr_type_name(t: AttrType) -> &'static str {
    match t {
        AttrType::String => "a string",
        AttrType::Long => "an integer",
        AttrType::Bool => "a boolean",
        AttrType::StringSet => "a list of strings",
        AttrType::Ipaddr => "an IP address or range",
    }
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, String> {
    let t = cedar_policy::EntityTypeName::from_str(kind)
        .map_err(|_| format!("{kind:?} is not an entity type name"))?;
    Ok(EntityUid::from_type_name_and_id(
        t,
        cedar_policy::EntityId::new(id),
    ))
}

#[cfg(test)]
mod tests;
