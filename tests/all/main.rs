//! Integration tests: each module drives a real daemon on 127.0.0.1:0 through its HTTP API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod budgets;
mod bus;
mod calls;
mod cli;
mod containment;
mod crash;
mod drill;
mod edit;
mod health;
mod http;
mod isolation;
mod languages;
mod limits;
mod process;
mod push;
mod repair;
mod restart;
mod rollback;
mod session;
mod supervision;
mod swap;
mod trading;
mod unservable;
