//! Starting from the error: an access-denied text AWS returned, read into the principal, action
//! and resource it names and AWS's claim about the layer; then the diagnosis of that principal's
//! access, checked against the claim, with the fix.

pub mod parse;

pub use parse::{Claim, ClaimedLayer, ErrorKind, ParseError, ParsedError, Service, parse};
