//! Tells apart the ways a push can be wrong before and after compiling: not wasm, a core
//! module, imports the host does not serve, or a component of another world.

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::Rejection;

/// Interfaces of this package the host serves. WASI p2 interfaces are served as well.
const SERVED: &[&str] = &[
    "overseer:agent/types@0.1.0",
    "overseer:agent/runtime@0.1.0",
    "overseer:agent/kv@0.1.0",
    "overseer:agent/llm@0.1.0",
    "overseer:agent/http@0.1.0",
    "overseer:agent/source@0.1.0",
    "overseer:agent/market@0.1.0",
    "overseer:agent/broker@0.1.0",
    "overseer:agent/memory@0.1.0",
    "overseer:agent/budget@0.1.0",
    "overseer:agent/backtest@0.1.0",
    "overseer:agent/fundamentals@0.1.0",
    "overseer:agent/fleet@0.1.0",
    "overseer:agent/prompts@0.1.0",
];

/// Check the preamble: WebAssembly at all, and a component rather than a core module.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), Rejection> {
    if !bytes.starts_with(b"\0asm") || bytes.len() < 8 {
        return Err(Rejection::NotWasm);
    }
    // After the magic: a 16-bit version and a 16-bit layer, 0 for core modules, 1 for components.
    match [bytes[6], bytes[7]] {
        [0, 0] => Err(Rejection::NotComponent),
        [1, 0] => Ok(()),
        _ => Err(Rejection::Invalid(
            "unknown WebAssembly binary layer".to_string(),
        )),
    }
}

/// Check that every import of a compiled component is one the host serves; answer them all.
pub(crate) fn check_imports(
    engine: &Engine,
    component: &Component,
) -> Result<Vec<String>, Rejection> {
    let imports: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let unknown: Vec<&str> = imports
        .iter()
        .map(String::as_str)
        .filter(|name| !name.starts_with("wasi:") && !SERVED.contains(name))
        .collect();
    if unknown.is_empty() {
        Ok(imports)
    } else {
        Err(Rejection::UnknownImport(unknown.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_wasm() {
        assert!(matches!(
            check_header(b"hello world"),
            Err(Rejection::NotWasm)
        ));
        assert!(matches!(check_header(b""), Err(Rejection::NotWasm)));
    }

    #[test]
    fn core_module_is_not_a_component() {
        let module = wat::parse_str("(module (func (export \"handle\")))").unwrap();
        assert!(matches!(
            check_header(&module),
            Err(Rejection::NotComponent)
        ));
    }

    #[test]
    fn empty_component_passes_the_header_check() {
        let component = wat::parse_str("(component)").unwrap();
        assert!(check_header(&component).is_ok());
    }
}
