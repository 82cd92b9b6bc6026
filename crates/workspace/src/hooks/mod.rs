//! Completion hooks: where the server talks to the outside world on a
//! user's behalf. `ssrf` decides where a hook may go.

pub mod ssrf;
