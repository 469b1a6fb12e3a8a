//! Native tests of each part against the fake host and the fake HubSpot.

mod connect;
mod journal;
mod lookup;
mod settings;
mod unknown;
mod users;
