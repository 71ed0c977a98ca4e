//! Clients of the outside world the host serves to agents: each has a working default path
//! (here: "not configured") and a real client for the remote service.

pub mod http;
pub mod llm;
