//! The Azure Functions custom-handler invocation protocol (`{"Data","Metadata"}` in,
//! `{"Outputs","Logs","ReturnValue"}` out) for the functions the host does not forward. The
//! function definitions both hosts are driven by are in [`crate::definitions`].

pub mod envelope;
pub mod invoke;
