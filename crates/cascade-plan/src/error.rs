//! Why a plan could not be made.

/// A problem found while planning a run (before anything starts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("unknown input `{name}` (declared inputs: {known})")]
    UnknownInput { name: String, known: String },
    #[error("input `{name}` is required and has no default")]
    MissingInput { name: String },
    #[error("input `{name}`: expected {expected}, found `{found}`")]
    BadInput {
        name: String,
        expected: String,
        found: String,
    },
    #[error("unknown job `{name}` (jobs: {known})")]
    UnknownJob { name: String, known: String },
    #[error("job `{job}`: {source}")]
    UnsafeScript {
        job: String,
        #[source]
        source: crate::script::ScriptError,
    },
    #[error("invalid path glob `{glob}` in job `{job}`: {reason}")]
    BadGlob {
        job: String,
        glob: String,
        reason: String,
    },
}
