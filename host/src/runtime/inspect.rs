//! Checks a file before it may become a plugin: it must be a component, built
//! against a WIT version this host serves, asking for no ambient authority
//! (files, sockets, raw HTTP), and carrying a valid manifest.

use wasmparser::{Encoding, Parser, Payload};

use super::manifest::{self, Manifest, ManifestError};

/// WASI interfaces a plugin may not import: the host grants no files, no
/// sockets, and outbound HTTP only through `pbx:crm/http-fetch`.
const FORBIDDEN_IMPORTS: &[(&str, &str)] = &[
    ("wasi:filesystem/", "files"),
    ("wasi:sockets/", "sockets"),
    ("wasi:http/", "raw HTTP (use pbx:crm/http-fetch)"),
];

/// `component` with a top-level custom section `name` appended: how a
/// vendor's packaging adds a manifest (`manifest::SECTION`) or a signature
/// (`signature::SECTION`) to a finished build without touching the rest.
pub fn append_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(name.len() + payload.len() + 5);
    leb128(&mut content, name.len());
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut out = Vec::with_capacity(component.len() + content.len() + 6);
    out.extend_from_slice(component);
    out.push(0); // custom section id
    leb128(&mut out, content.len());
    out.extend_from_slice(&content);
    out
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// What inspection found.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The embedded manifest.
    pub manifest: Manifest,
    /// The `pbx:crm` version the component uses, e.g. `0.1.0`.
    pub api_version: String,
    /// Every top-level import name.
    pub imports: Vec<String>,
    /// Every top-level export name.
    pub exports: Vec<String>,
}

/// Why a file is refused.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Not a component at all.
    /// The reason is a plain sentence: the parser's detail (e.g. the
    /// magic-number bytes it expected) goes to the log instead.
    #[error(
        "the file is not a WebAssembly component ({0}); build the plugin for wasm32-wasip2 (cargo build --target wasm32-wasip2)"
    )]
    NotAComponent(String),
    /// Built against an unsupported API.
    #[error(
        "the plugin was built against pbx:crm@{found}, but this host serves {}; rebuild the plugin against one of those versions or upgrade the host",
        supported_list()
    )]
    UnsupportedApi {
        /// The version found.
        found: String,
    },
    /// Uses no pbx:crm interface.
    #[error(
        "the component imports and exports no pbx:crm interface, so it is not a PBX CRM plugin; this host serves {}",
        supported_list()
    )]
    NotAPlugin,
    /// Mixes API versions.
    #[error("the component mixes pbx:crm versions {0}; build it against one version")]
    MixedApis(String),
    /// Asks for ambient authority.
    #[error(
        "the plugin imports {import}, which would give it {what}; plugins get no {what} — remove the dependency that needs it"
    )]
    Forbidden {
        /// The import.
        import: String,
        /// What it would grant.
        what: &'static str,
    },
    /// Manifest problem.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The manifest says another API than the component uses.
    #[error(
        "the manifest says api {declared:?} but the component is built against pbx:crm@{actual}; fix the manifest"
    )]
    ApiMismatch {
        /// Manifest's `api`.
        declared: String,
        /// What the imports say.
        actual: String,
    },
}

fn supported_list() -> String {
    super::wit::supported()
        .map(|v| format!("pbx:crm@{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A file the parser refused: the administrator reads a plain reason, the
/// parser's words go to the log.
fn not_a_component(e: wasmparser::BinaryReaderError) -> InspectError {
    tracing::info!(detail = %e, "refused plugin file: not a WebAssembly component");
    InspectError::NotAComponent("it is not valid WebAssembly".into())
}

/// Inspect a component's bytes without compiling it.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, InspectError> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut manifest_bytes: Option<Vec<u8>> = None;
    let mut depth = 0usize;
    let mut first = true;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(not_a_component)?;
        match payload {
            Payload::Version { encoding, .. } => {
                if first && encoding != Encoding::Component {
                    return Err(InspectError::NotAComponent(
                        "it is a core module, not a component".into(),
                    ));
                }
                first = false;
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(not_a_component)?;
                    imports.push(import.name.0.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(not_a_component)?;
                    exports.push(export.name.0.to_string());
                }
            }
            // A top-level section (added at packaging) wins over one the
            // compiler embedded in the core module.
            Payload::CustomSection(reader)
                if reader.name() == manifest::SECTION
                    && (depth == 0 || manifest_bytes.is_none()) =>
            {
                manifest_bytes = Some(reader.data().to_vec());
            }
            _ => {}
        }
    }
    if first {
        return Err(InspectError::NotAComponent("the file is empty".into()));
    }

    for import in &imports {
        if let Some((_, what)) = FORBIDDEN_IMPORTS
            .iter()
            .find(|(p, _)| import.starts_with(p))
        {
            return Err(InspectError::Forbidden {
                import: import.clone(),
                what,
            });
        }
    }

    let mut versions: Vec<&str> = imports
        .iter()
        .chain(&exports)
        .filter_map(|name| name.strip_prefix("pbx:crm/"))
        .filter_map(|rest| rest.split_once('@').map(|(_, v)| v))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let api_version = match versions.as_slice() {
        [] => return Err(InspectError::NotAPlugin),
        [one] => (*one).to_string(),
        many => return Err(InspectError::MixedApis(many.join(", "))),
    };
    if !super::wit::supported().any(|v| v == api_version) {
        return Err(InspectError::UnsupportedApi { found: api_version });
    }

    let manifest = Manifest::parse(&manifest_bytes.ok_or(ManifestError::Missing)?)?;
    if manifest.api != format!("pbx:crm@{api_version}") {
        return Err(InspectError::ApiMismatch {
            declared: manifest.api.clone(),
            actual: api_version,
        });
    }
    Ok(Inspection {
        manifest,
        api_version,
        imports,
        exports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_core_modules_are_not_components() {
        assert!(matches!(
            inspect(b"not wasm"),
            Err(InspectError::NotAComponent(_))
        ));
        assert!(matches!(inspect(b""), Err(InspectError::NotAComponent(_))));
        // The smallest core module: magic + version 1.
        let core = b"\0asm\x01\0\0\0";
        let err = inspect(core)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("core module"), "{err}");
    }

    /// The administrator reads a sentence, not the parser's byte arrays.
    #[test]
    fn a_file_that_is_not_wasm_is_refused_in_plain_words() {
        for bytes in [&b"not wasm at all"[..], b"\0asm\x01", b"PK\x03\x04zipped"] {
            let err = inspect(bytes)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("not a WebAssembly component"), "{err}");
            for detail in ["magic", "0x", "[", "expected", "offset"] {
                assert!(!err.contains(detail), "{detail:?} in {err}");
            }
        }
    }

    #[test]
    fn the_unsupported_version_message_names_the_supported_ones() {
        let msg = InspectError::UnsupportedApi {
            found: "9.0.0".into(),
        }
        .to_string();
        assert!(
            msg.contains("pbx:crm@9.0.0") && msg.contains("pbx:crm@0.1.0"),
            "{msg}"
        );
    }
}
