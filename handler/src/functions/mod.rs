//! The Azure Functions side: the function definitions both hosts are driven by, and the
//! custom-handler invocation protocol (`{"Data","Metadata"}` in, `{"Outputs","Logs","ReturnValue"}` out).

pub mod definitions;
pub mod envelope;
pub mod invoke;
