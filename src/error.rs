//! Command errors, and the one place they become RESP error replies.
//!
//! Handlers return `Result<(), CommandError>`; the dispatcher writes
//! `-{error}` for an `Err`. Each variant's text is Redis's exact message, code
//! included, because clients match on them (`WRONGTYPE`, `NOAUTH`, `MOVED`).

/// At most `max` bytes of `b`, as Redis's `%.128s` prints a client's word
/// into an error (the reply stays short whatever was sent).
pub fn truncated(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand { name: String, args: String },
    #[error("ERR unknown subcommand '{sub}'. Try {container} HELP.")]
    UnknownSubcommand { sub: String, container: String },
    /// A known subcommand given arguments its container's own parser
    /// rejects (Redis's addReplySubcommandSyntaxError).
    #[error(
        "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try {container} HELP."
    )]
    SubcommandSyntax {
        sub: String,
        container: &'static str,
    },
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(String),
    #[error("ERR syntax error")]
    Syntax,
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR increment would produce NaN or Infinity")]
    NanOrInfinity,
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(&'static str),
    #[error("ERR no such key")]
    NoSuchKey,
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    #[error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")]
    StringTooLong,
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    /// ACL (`server::users`): the user may not run this command, named
    /// as Redis names it (`config|set`).
    #[error("NOPERM this user has no permissions to run the '{0}' command")]
    NoPermCommand(String),
    #[error("NOPERM this user has no permissions to access one of the keys used as arguments")]
    NoPermKey,
    #[error("NOPERM this user has no permissions to access one of the channels used as arguments")]
    NoPermChannel,
    #[error("BUSYKEY Target key name already exists.")]
    BusyKey,
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    #[error("LOADING Redis is loading the dataset in memory")]
    Loading,
    #[error("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled, because this instance is configured to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB error.")]
    SnapshotFailed,
    /// Redis's words exactly (its typo included): clients and tools match them.
    #[error("DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.")]
    ProtectedMode,
    #[error("READONLY You can't write against a read only replica.")]
    ReadOnly,
    #[error("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.")]
    MasterDown,
    #[error("NOREPLICAS Not enough good replicas to write.")]
    NoReplicas,
    #[error("NOMASTERLINK Can't SYNC while not connected with my master")]
    NoMasterLink,
    /// Any other command while a script runs past busy-reply-threshold
    /// (`server::busy`); SCRIPT KILL of a function, FUNCTION KILL of a script.
    #[error(
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    )]
    BusyScript,
    #[error(
        "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    )]
    BusyFunction,
    #[error("NOTBUSY No scripts in execution right now.")]
    NotBusy,
    #[error("UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.")]
    Unkillable,
    /// A message with its own error code (`NOAUTH HELLO must be ...`).
    #[error("{0}")]
    Coded(String),
    /// A script's error that is a command's error it called, already in
    /// the error statistics where it arose (Redis counts an error once).
    #[error("{0}")]
    Counted(String),
    /// Any other `ERR ...` message.
    #[error("ERR {0}")]
    Err(String),
}

impl CommandError {
    pub fn err(msg: impl Into<String>) -> Self {
        CommandError::Err(msg.into())
    }

    /// [`CommandError::SubcommandSyntax`] for `argv[1]` as sent.
    pub fn subcommand_syntax<A: AsRef<[u8]>>(argv: &[A], container: &'static str) -> Self {
        CommandError::SubcommandSyntax {
            sub: truncated(argv[1].as_ref(), 128),
            container,
        }
    }

    pub fn err_code(msg: impl Into<String>) -> Self {
        CommandError::Coded(msg.into())
    }

    /// The error code, for INFO errorstats (`errorstat_WRONGTYPE`).
    pub fn code(&self) -> String {
        let s = self.to_string();
        s.split(' ').next().unwrap_or("ERR").to_string()
    }
}

pub type CmdResult = Result<(), CommandError>;
