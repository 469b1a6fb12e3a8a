//! The WIT bindings: the types and imports `wit-bindgen` generates from the
//! contract (`wit/v0.5.0`), once for every plugin. A plugin implements the
//! exported interfaces' `Guest` traits and exports them with
//! `pbx_crm_sdk::bindings::export!(MyPlugin with_types_in pbx_crm_sdk::bindings)`,
//! so its types are these (wit-bindgen's `with` maps imported interfaces
//! onto another crate's bindings, but not exported ones).

// The contract's world plus one export of the SDK's: `wizer-initialize`,
// which a vendor's build may run once to snapshot a warmed-up instance
// (`tools/plugin-preinit`). The host never calls it; see
// docs/ARCHITECTURE.md, "Pre-initialization".
#[cfg(feature = "component")]
wit_bindgen::generate!({
    path: "../wit/v0.5.0",
    inline: "
        package pbx:crm-sdk;

        world plugin {
            include pbx:crm/plugin@0.5.0;
            export wizer-initialize: func();
        }
    ",
    world: "pbx:crm-sdk/plugin",
    generate_all,
    pub_export_macro: true,
    default_bindings_module: "pbx_crm_sdk::bindings",
});

// Without the `component` feature the same types come from a world that
// exports nothing: the WIT world a crate embeds describes what its component
// must export, so a crate reusing the plugin's logic in its own component
// (the association benchmark) must not inherit the plugin's exports.
// Imports its code never calls are left out of that component.
#[cfg(not(feature = "component"))]
wit_bindgen::generate!({
    path: "../wit/v0.5.0",
    inline: "
        package pbx:crm-logic;

        world logic {
            import pbx:crm/http-fetch@0.5.0;
            import pbx:crm/kv-store@0.5.0;
            import pbx:crm/open-browser@0.5.0;
            import pbx:crm/directory@0.5.0;
            import pbx:crm/log@0.5.0;
            import pbx:crm/integration@0.5.0;
            import pbx:crm/calls@0.5.0;
            import pbx:crm/user-sign-in@0.5.0;
        }
    ",
    world: "pbx:crm-logic/logic",
    generate_all,
});

/// The exported interfaces' types under the path the `component` build
/// gives them.
#[cfg(not(feature = "component"))]
pub mod exports {
    pub use super::pbx;
}

pub use pbx::crm::types::{Error as WitError, ErrorKind};
