//! Storage errors.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create the directory {path}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the database schema could not be migrated")]
    Migrate(#[source] rusqlite_migration::Error),
    #[error("database query failed")]
    Query(#[from] rusqlite::Error),
    #[error("no run `{0}`; `cascade runs` lists the runs")]
    NoRun(String),
    #[error("no DAG `{0}`; `cascade dag list` lists the DAGs")]
    NoDag(String),
    #[error("no worker `{0}`; `cascade dag worker list` lists the workers")]
    NoWorker(String),
    #[error("no token `{0}` in force; `cascade token list` lists the tokens")]
    NoToken(String),
    #[error("a token named `{0}` is in force already; revoke it first or choose another --name")]
    TokenNameTaken(String),
    #[error("the system's random source failed")]
    Random(#[source] getrandom::Error),
    #[error("cannot start a store thread")]
    Thread(#[source] std::io::Error),
    #[error("the store's writer thread stopped")]
    WriterGone,
    #[error("the batch of submissions could not be committed; none was queued")]
    Batch(#[source] std::sync::Arc<rusqlite::Error>),
    #[error("the store failed for every request of a batch")]
    Shared(#[source] std::sync::Arc<StoreError>),
    #[error("the lease on run `{0}` ran out or was taken over; its result was not recorded")]
    Fenced(String),
    #[error(
        "{worker_id} already runs on node `{existing}`; it cannot also target `{requested}` (one worker, one node)"
    )]
    TargetConflict {
        worker_id: String,
        existing: String,
        requested: String,
    },
}
