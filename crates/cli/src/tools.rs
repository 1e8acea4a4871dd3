//! Built-in MCP tools: what `p2pf node --tool` offers and the demo's providers serve.

use p2p_foundation::mcp_crate::{Tool, tool_result};
use serde_json::{Value, json};

/// The built-in tools' names.
pub const BUILTIN: &[&str] = &["reverse", "echo"];

/// The built-in tool `name`, answering with `served_by` in its result; `None` if there is
/// no such tool.
pub fn builtin(name: &str, served_by: Value) -> Option<Tool> {
    match name {
        "reverse" => Some(reverse(served_by)),
        "echo" => Some(echo(served_by)),
        _ => None,
    }
}

/// `reverse {text}` → `{reversed, served_by}`.
pub fn reverse(served_by: Value) -> Tool {
    Tool::new("reverse")
        .with_description("reverses a text; says which node served the call")
        .with_tags(["text", "p2pf"])
        .with_schema(json!({
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        }))
        .handler(move |call| {
            let served_by = served_by.clone();
            async move {
                let Some(text) = call.arguments.get("text").and_then(Value::as_str) else {
                    return Ok(tool_result::error("`text` must be a string"));
                };
                Ok(tool_result::structured(json!({
                    "reversed": text.chars().rev().collect::<String>(),
                    "served_by": served_by,
                })))
            }
        })
}

/// `echo {…}` → `{echo: {…}, served_by}`.
pub fn echo(served_by: Value) -> Tool {
    Tool::new("echo")
        .with_description("returns its arguments; says which node served the call")
        .with_tags(["p2pf"])
        .handler(move |call| {
            let served_by = served_by.clone();
            async move {
                Ok(tool_result::structured(json!({
                    "echo": Value::Object(call.arguments),
                    "served_by": served_by,
                })))
            }
        })
}
