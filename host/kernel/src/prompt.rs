//! Prompt templates: text with `{{variable}}` placeholders, each variable declared with a type,
//! checked when a version is written and again when it is rendered. What an agent's manifest
//! declares under `[prompts.KEY]`, and what the registry keeps for every version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest template (system and user text together), in bytes: the `llm` interface's limit on
/// a prompt.
pub const MAX_TEMPLATE_BYTES: usize = overseer_sandbox::MAX_PROMPT_BYTES;

/// The type of a template's variable, checked against the value given when it is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    /// A JSON string, inserted as it is.
    String,
    /// A JSON number.
    Number,
    /// A JSON number without a fraction.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// Any JSON value, inserted as compact JSON.
    Json,
}

impl VarType {
    fn admits(self, value: &Value) -> bool {
        match self {
            VarType::String => value.is_string(),
            VarType::Number => value.is_number(),
            VarType::Integer => value.is_i64() || value.is_u64(),
            VarType::Boolean => value.is_boolean(),
            VarType::Json => true,
        }
    }
}

/// `[prompts.KEY]` of a manifest, and the body of a kept version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    /// The system message; may name variables too.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system: String,
    /// The user message.
    pub template: String,
    /// Each variable's type, by name.
    #[serde(default)]
    pub variables: BTreeMap<String, VarType>,
}

/// Why a template cannot be written or rendered: said so a person or a model can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the template names {0:?}, which the prompt does not declare")]
    UnknownVariable(String),
    #[error("a placeholder is not closed or not a name at byte {0}: write {{{{name}}}}")]
    Malformed(usize),
    #[error("variable {0:?} is not given")]
    Missing(String),
    #[error("variable {0:?} is not one the prompt declares")]
    Unexpected(String),
    #[error("variable {name:?} must be {expected:?}")]
    Mistyped { name: String, expected: VarType },
    #[error("the variables must be a JSON object")]
    NotAnObject,
    #[error("the template is {0} bytes: at most {MAX_TEMPLATE_BYTES}")]
    TooLarge(usize),
    #[error("the template is empty")]
    Empty,
}

/// The parts of a template: text, and the placeholders between.
enum Part<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn parts(template: &str) -> Result<Vec<Part<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        out.push(Part::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or(TemplateError::Malformed(offset + open))?;
        let name = after[..close].trim();
        let is_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !is_name {
            return Err(TemplateError::Malformed(offset + open));
        }
        out.push(Part::Var(name));
        let consumed = open + 2 + close + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    out.push(Part::Text(rest));
    Ok(out)
}

impl PromptSpec {
    /// Check that the templates are well formed, not too large, and name only declared
    /// variables.
    pub fn check(&self) -> Result<(), TemplateError> {
        if self.template.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        let size = self.system.len() + self.template.len();
        if size > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TooLarge(size));
        }
        for text in [&self.system, &self.template] {
            for part in parts(text)? {
                if let Part::Var(name) = part
                    && !self.variables.contains_key(name)
                {
                    return Err(TemplateError::UnknownVariable(name.to_string()));
                }
            }
        }
        Ok(())
    }

    /// The system and user messages with `values` (a JSON object giving every declared
    /// variable a value of its type, and nothing else) put in.
    pub fn render(&self, values: &Value) -> Result<(String, String), TemplateError> {
        let values = values.as_object().ok_or(TemplateError::NotAnObject)?;
        if let Some(name) = values.keys().find(|k| !self.variables.contains_key(*k)) {
            return Err(TemplateError::Unexpected(name.clone()));
        }
        for (name, kind) in &self.variables {
            let value = values
                .get(name)
                .ok_or_else(|| TemplateError::Missing(name.clone()))?;
            if !kind.admits(value) {
                return Err(TemplateError::Mistyped {
                    name: name.clone(),
                    expected: *kind,
                });
            }
        }
        let fill = |text: &str| -> Result<String, TemplateError> {
            let mut out = String::with_capacity(text.len());
            for part in parts(text)? {
                match part {
                    Part::Text(t) => out.push_str(t),
                    Part::Var(name) => match values.get(name) {
                        Some(Value::String(s)) => out.push_str(s),
                        Some(other) => out.push_str(&other.to_string()),
                        None => return Err(TemplateError::UnknownVariable(name.to_string())),
                    },
                }
            }
            Ok(out)
        };
        Ok((fill(&self.system)?, fill(&self.template)?))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(template: &str) -> PromptSpec {
        PromptSpec {
            system: "You rate {{symbol}}.".to_string(),
            template: template.to_string(),
            variables: BTreeMap::from([
                ("symbol".to_string(), VarType::String),
                ("n".to_string(), VarType::Integer),
                ("bars".to_string(), VarType::Json),
            ]),
        }
    }

    #[test]
    fn renders_each_type_and_refuses_what_does_not_fit() {
        let s = spec("{{ symbol }} over {{n}} bars: {{bars}}");
        s.check().unwrap();
        let (system, text) = s
            .render(&json!({ "symbol": "AAPL", "n": 2, "bars": [1.5, 2] }))
            .unwrap();
        assert_eq!(system, "You rate AAPL.");
        assert_eq!(text, "AAPL over 2 bars: [1.5,2]");
        let err = |v: Value| s.render(&v).unwrap_err().to_string();
        assert!(err(json!({ "symbol": "A", "n": 2 })).contains("\"bars\" is not given"));
        assert!(err(json!({ "symbol": "A", "n": 2.5, "bars": 1 })).contains("\"n\" must be"));
        assert!(
            err(json!({ "symbol": "A", "n": 1, "bars": 1, "x": 1 })).contains("\"x\" is not one")
        );
        assert!(err(json!([1])).contains("JSON object"));
    }

    #[test]
    fn a_template_names_only_declared_variables_in_well_formed_placeholders() {
        assert_eq!(
            spec("{{ticker}}").check(),
            Err(TemplateError::UnknownVariable("ticker".to_string()))
        );
        assert_eq!(spec("a {{symbol").check(), Err(TemplateError::Malformed(2)));
        assert_eq!(spec("{{ a b }}").check(), Err(TemplateError::Malformed(0)));
        assert_eq!(spec("  ").check(), Err(TemplateError::Empty));
        // JSON braces are text.
        spec("answer {\"action\": \"BUY\"} for {{symbol}}")
            .check()
            .unwrap();
    }
}
