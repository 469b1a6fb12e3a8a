//! The end-to-end tests through the real host, in one test binary: each
//! binary links the whole host and wasmtime (~180 MB in a debug build), so
//! one binary instead of thirteen keeps a clean build's disk use and link
//! time down. `leaks` stays apart because it captures the process's logs.
//!
//! Run one area with a filter, e.g.
//! `cargo test -p e2e-tests --test through_host portal_browser::`.

mod after_call_work;
mod agent_work_browser;
mod agents;
mod agents_browser;
mod api_limits;
mod api_versions;
mod associations;
mod call_logs;
mod calls;
mod calls_browser;
mod cli;
mod cli_output;
mod connect;
mod crm_neutral;
mod crm_pages;
mod dead_letters;
mod hostile;
mod hubspot;
mod install;
mod kv_store;
mod network;
mod outbound;
mod person_accounts;
mod phone_search;
mod plugin_versions;
mod popups;
mod portal_browser;
mod portal_guide_browser;
mod portal_security;
mod redis_store;
mod replicas;
mod sandbox;
mod shared_engine;
mod tenants;
mod tokens;
mod user_refresh;
mod user_sign_in;
