//! The API's OpenAPI 3.1 document, served at `GET /v1/openapi.json`.
//!
//! It is built from the same list as the router: each module registers its handlers with
//! utoipa-axum's `routes!`, which takes the handler's `#[utoipa::path]` (method, path,
//! parameters, body, success answers) for the document and the handler itself for the router,
//! so a route cannot be served without being described. Bodies and answers are the handlers'
//! own types (`ToSchema`), the store's and the domain crates' records included.
//!
//! What every operation shares is added here once: the bearer token (all but what the guard
//! serves openly: liveness and this document), and the refusals its requests may meet, from
//! the router and the guard as much as from the handler, each with the one error body and
//! its [`CODES`].

use std::borrow::Cow;

use axum::http::Method;
use serde::{Deserialize, Serialize};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi, Ref, RefOr, ResponseBuilder, Schema, Type,
};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::error::CODES;

/// A module's operations, with a check in debug builds that no two of the document's schemas
/// share a name: utoipa keeps one of two types of the same name and silently drops the other,
/// so the document would describe a field with another type's schema.
pub(crate) fn named(
    routes: utoipa_axum::router::UtoipaMethodRouter<crate::AppState>,
) -> utoipa_axum::router::UtoipaMethodRouter<crate::AppState> {
    #[cfg(debug_assertions)]
    {
        static SEEN: std::sync::Mutex<Schemas> = std::sync::Mutex::new(Schemas::new());
        let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(name) = same_names_same_schemas(&mut seen, &routes.0) {
            panic!(
                "two types are named {name} in the OpenAPI document: rename one with #[schema(as = …)]"
            );
        }
    }
    routes
}

/// The schemas met so far, by name.
type Schemas = std::collections::BTreeMap<String, RefOr<Schema>>;

/// Add `schemas` to `seen`; the name of one that differs from a schema of the same name seen
/// before is the error.
fn same_names_same_schemas(
    seen: &mut Schemas,
    schemas: &[(String, RefOr<Schema>)],
) -> Result<(), String> {
    for (name, schema) in schemas {
        match seen.get(name) {
            Some(known) if known != schema => return Err(name.clone()),
            Some(_) => {}
            None => {
                seen.insert(name.clone(), schema.clone());
            }
        }
    }
    Ok(())
}

/// Every refusal's body: `{"error": {"code", "message", "version"?}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

/// What was refused and why.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// A stable code; the README's table says which status each comes with.
    #[schema(value_type = ErrorCode)]
    pub code: &'static str,
    /// For a person: what went wrong and, where there is one, what to do.
    pub message: String,
    /// The version that answered, or that the refusal is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// The stable error codes, as a string enumeration.
pub(crate) struct ErrorCode;

impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(CODES.iter().copied()))
            .into()
    }
}

impl ToSchema for ErrorCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// `?limit=N&after=CURSOR` of a list ([`crate::page`]).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Items on the page: 1 to 1,000 (100 unless the list says otherwise).
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// The cursor of the page before: the `next` of its answer.
    pub after: Option<String>,
}

/// `{name}`: an agent.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct AgentPath {
    /// The agent's name, `[a-z0-9][a-z0-9-]{0,62}`.
    #[param(example = "echo", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub name: String,
}

/// `{id}`: a record's number.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct IdPath {
    /// Its id.
    #[param(example = 1)]
    pub id: i64,
}

/// Statuses any request may be refused with, besides what its handler answers: the guard
/// (401, 403, 421), the router (404, 405), the body reader (408, 413, 415), the URI (414),
/// and the handler's own refusals by the README's table.
const REFUSALS: &[(&str, &str)] = &[
    (
        "400",
        "invalid request: a parameter, body or name that does not fit",
    ),
    ("401", "no valid bearer token"),
    (
        "403",
        "refused: a foreign origin, a denied grant or the risk gate",
    ),
    ("404", "no such endpoint or record"),
    ("405", "the path does not take this method (see `Allow`)"),
    ("408", "the body did not arrive in time"),
    ("409", "the record is not in a state that allows this"),
    ("413", "the body is too large"),
    ("414", "the URI is too long"),
    (
        "415",
        "the body's content type is not one the endpoint takes",
    ),
    ("421", "the `Host` header does not name this listener"),
    (
        "422",
        "well formed, but refused: a check, a patch or the agent's own answer",
    ),
    ("429", "over a concurrency limit or a queue"),
    ("500", "the host failed; nothing was half-written"),
    ("502", "a guest or an upstream service failed"),
    (
        "503",
        "this part is off, or the agent is quarantined, or the host is full",
    ),
    ("504", "the call ran out of time"),
];

/// The document as served: [`finish`]ed, then the JSON-level corrections of [`correct`].
pub(crate) fn document(doc: OpenApi) -> serde_json::Value {
    let mut value = serde_json::to_value(finish(doc)).unwrap_or_default();
    correct(&mut value);
    value
}

/// The finished document: the token scheme, and the shared refusals on every operation.
fn finish(mut doc: OpenApi) -> OpenApi {
    doc.info.title = "overseer".to_string();
    // Not the crate's authors: the API has no contact of its own.
    doc.info.contact = None;
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.info.description = Some(
        "The overseer daemon's HTTP API v1: agents, versions and their pipeline, edits, \
         alerts, trading, backtests, research, governance and prompts."
            .to_string(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "token",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("`OVERSEER_TOKEN`, or the token in `<data-dir>/token`"))
                .build(),
        ),
    );
    let mut schemas = Vec::new();
    <ErrorBody as ToSchema>::schemas(&mut schemas);
    schemas.push((ErrorBody::name().into_owned(), ErrorBody::schema()));
    components.schemas.extend(schemas);
    doc.security = Some(vec![SecurityRequirement::new(
        "token",
        Vec::<String>::new(),
    )]);
    unique_operation_ids(&mut doc);
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, operation) in methods(item) {
            // OpenAPI asks every answer for a description; a success without one of its own
            // gets its status's name.
            for (status, response) in operation.responses.responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("success")
                        .to_string();
                }
            }
            // What the guard serves without the token.
            let open = crate::access(&method, path) == crate::Access::Open;
            let has_body = operation.request_body.is_some();
            for (status, description) in REFUSALS {
                // An open path asks for no token; a request without a body has none too large
                // or of the wrong type.
                if (open && *status == "401") || (!has_body && matches!(*status, "413" | "415")) {
                    continue;
                }
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| refusal(status, description));
            }
            if open {
                operation.security = Some(vec![SecurityRequirement::default()]);
            }
        }
    }
    doc
}

/// An operation's id is its handler's name, which modules reuse (`list`, `start`, …): one
/// that is not unique is prefixed with the operation's tag (`budgets_list`), as OpenAPI
/// requires ids to be unique.
fn unique_operation_ids(doc: &mut OpenApi) {
    let mut uses = std::collections::HashMap::<String, usize>::new();
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            if let Some(id) = &operation.operation_id {
                *uses.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            let tag = operation.tags.as_ref().and_then(|t| t.first()).cloned();
            if let (Some(id), Some(tag)) = (&mut operation.operation_id, tag)
                && uses.get(id.as_str()).is_some_and(|n| *n > 1)
            {
                *id = format!("{tag}_{id}");
            }
        }
    }
}

fn refusal(status: &str, description: &str) -> RefOr<utoipa::openapi::Response> {
    let mut response = ResponseBuilder::new().description(description);
    if status == "405" {
        response = response.header(
            "Allow",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some("the methods the path takes"))
                .build(),
        );
    }
    response
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

/// A path's operations, each with its method.
fn methods(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = (Method, &mut Operation)> {
    [
        (Method::GET, item.get.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
        (Method::HEAD, item.head.as_mut()),
        (Method::OPTIONS, item.options.as_mut()),
        (Method::TRACE, item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation?)))
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    methods(item).map(|(_, operation)| operation)
}

/// What the generator cannot say itself, corrected on the JSON:
/// - a body that may be absent is an optional body of its type, not a required `null`
///   (`Option<T>` makes `oneOf: [T, null]`, and a literal `null` is refused like any body that
///   is not `T`);
/// - unsigned integer formats carry their registered names (`uint32`, not `u-int32`).
fn correct(value: &mut serde_json::Value) {
    use serde_json::Value;
    if let Some(paths) = value.get_mut("paths").and_then(Value::as_object_mut) {
        for operation in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in operation.values_mut() {
                let Some(body) = operation.get_mut("requestBody") else {
                    continue;
                };
                let mut optional = false;
                for content in body
                    .get_mut("content")
                    .and_then(Value::as_object_mut)
                    .into_iter()
                    .flat_map(|c| c.values_mut())
                {
                    let Some(schema) = content.get_mut("schema") else {
                        continue;
                    };
                    let Some(items) = schema.get("oneOf").and_then(Value::as_array) else {
                        continue;
                    };
                    let not_null: Vec<&Value> = items
                        .iter()
                        .filter(|s| s.get("type") != Some(&Value::from("null")))
                        .collect();
                    if not_null.len() == 1 && items.len() == 2 {
                        *schema = not_null[0].clone();
                        optional = true;
                    }
                }
                if optional {
                    body["required"] = Value::Bool(false);
                }
            }
        }
    }
    registered_formats(value);
}

fn registered_formats(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if let Some(Value::String(format)) = map.get_mut("format")
                && let Some(bits) = format.strip_prefix("u-int")
            {
                *format = format!("uint{bits}");
            }
            map.values_mut().for_each(registered_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(registered_formats),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_schemas_of_one_name_are_caught() {
        let a = ObjectBuilder::new().schema_type(Type::String).into();
        let b = ObjectBuilder::new().schema_type(Type::Integer).into();
        let mut seen = Schemas::new();
        let same = [("Kind".to_string(), a)];
        assert_eq!(same_names_same_schemas(&mut seen, &same), Ok(()));
        // The same type again, from another operation: fine.
        assert_eq!(same_names_same_schemas(&mut seen, &same), Ok(()));
        let other = [("Kind".to_string(), b)];
        assert_eq!(
            same_names_same_schemas(&mut seen, &other),
            Err("Kind".to_string())
        );
    }
}
