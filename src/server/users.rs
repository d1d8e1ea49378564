//! ACL users: who may run what, on which keys and channels.
//!
//! A [`User`] is Redis's: on or off, a set of password hashes (SHA-256, as
//! `ACL GETUSER` shows them) or `nopass`, and a list of [`Selector`]s, the
//! first being the root one that plain rules (`+get`, `~app:*`, `&news`)
//! change; `(...)` adds another. A command is allowed when one selector
//! allows all of it: the command (a bit per row of the command table, plus
//! Redis's deprecated first-argument allowances), every key it names with
//! the access the command needs (`%R~`/`%W~` patterns; [`key_needs`] reads
//! it from the key flags the command's row declares), and
//! every channel it publishes or subscribes to.
//!
//! Users are values: `ACL SETUSER` builds a changed copy and swaps it in,
//! bumping [`Users::generation`]. A connection keeps the `Arc` of the user
//! it authenticated as and looks it up again only when the generation
//! moved, so the check before a command costs one atomic load, and an
//! unrestricted user (the default one, as shipped) skips the rest. Internal
//! clients (the primary's stream, the log being loaded) have no user and
//! are never checked, as Redis's.
//!
//! The default user always exists and starts as `on nopass ~* &* +@all`;
//! `requirepass` sets its one password (or makes it `nopass` again). Users
//! come from `user` lines of the configuration file or from `aclfile`
//! (never both, as in Redis), and `ACL SAVE`/`ACL LOAD` write and read that
//! file in `ACL LIST`'s format.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::RwLock;
use sha2::{Digest, Sha256};

use crate::command::acl::CATEGORIES;
use crate::command::{Spec, TABLE};
use crate::glob::glob_match;
use crate::persistence::digest::hex;

/// Read and write permission on a key, as `%R~`, `%W~` and `~` give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

const RW: Access = Access {
    read: true,
    write: true,
};

impl Access {
    fn covers(self, need: Access) -> bool {
        (self.read || !need.read) && (self.write || !need.write)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyPattern {
    pattern: Vec<u8>,
    access: Access,
}

impl KeyPattern {
    fn describe(&self) -> String {
        let prefix = match (self.access.read, self.access.write) {
            (true, true) => "~".to_string(),
            (true, false) => "%R~".to_string(),
            _ => "%W~".to_string(),
        };
        format!("{prefix}{}", String::from_utf8_lossy(&self.pattern))
    }
}

/// One set of permissions: commands, keys, channels.
#[derive(Clone, Debug)]
pub struct Selector {
    /// A bit per row of `TABLE.all`.
    commands: Vec<u64>,
    /// `+@all` (or `allcommands`) was the last word on commands: commands
    /// added to Shoal later are allowed too.
    future: bool,
    /// Every command allowed and none taken away since.
    all_commands: bool,
    /// Redis's deprecated `+cmd|firstarg`: a command not allowed as a
    /// whole, allowed with these first arguments (lower case).
    first_args: BTreeMap<usize, Vec<String>>,
    all_keys: bool,
    keys: Vec<KeyPattern>,
    all_channels: bool,
    channels: Vec<Vec<u8>>,
}

/// Why a rule was refused, in Redis's words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("Unknown command or category name in ACL")]
    Unknown,
    #[error("Syntax error")]
    Syntax,
    #[error("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns")]
    AfterAllKeys,
    #[error("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels")]
    AfterAllChannels,
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    #[error("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters")]
    BadHash,
    #[error("Allowing first-arg of a subcommand is not supported")]
    SubcommandFirstArg,
}

fn words() -> usize {
    TABLE.all.len().div_ceil(64)
}

impl Selector {
    /// An empty selector; with `all_channels` as `acl-pubsub-default`
    /// says.
    fn new(all_channels: bool) -> Selector {
        Selector {
            commands: vec![0; words()],
            future: false,
            all_commands: false,
            first_args: BTreeMap::new(),
            all_keys: false,
            keys: Vec::new(),
            all_channels,
            channels: Vec::new(),
        }
    }

    fn allowed(&self, idx: usize) -> bool {
        self.commands[idx / 64] & (1 << (idx % 64)) != 0
    }

    fn set_bit(&mut self, idx: usize, on: bool) {
        if on {
            self.commands[idx / 64] |= 1 << (idx % 64);
        } else {
            self.commands[idx / 64] &= !(1 << (idx % 64));
            self.all_commands = false;
        }
    }

    /// Allows or denies a command with its subcommands (Redis's
    /// ACLChangeSelectorPerm).
    fn change(&mut self, idx: usize, on: bool) {
        self.set_bit(idx, on);
        self.first_args.remove(&idx);
        for sub in TABLE.all[idx].subcommands {
            if let Some(i) = TABLE.index(sub.name.as_bytes()) {
                self.set_bit(i, on);
            }
        }
    }

    fn change_category(&mut self, category: &str, on: bool) -> Result<(), RuleError> {
        if !CATEGORIES.contains(&category) {
            return Err(RuleError::Unknown);
        }
        for (i, s) in acl_rows() {
            if s.acl_categories().contains(&category) {
                self.change(i, on);
            }
        }
        Ok(())
    }

    fn all(&mut self, on: bool) {
        let fill = if on { u64::MAX } else { 0 };
        self.commands.iter_mut().for_each(|w| *w = fill);
        self.all_commands = on;
        self.future = on;
        self.first_args.clear();
    }

    /// Applies one selector rule (Redis's ACLSetSelector).
    fn apply(&mut self, op: &str) -> Result<(), RuleError> {
        let lower = op.to_ascii_lowercase();
        match lower.as_str() {
            "allkeys" | "~*" => {
                self.all_keys = true;
                self.keys.clear();
            }
            "resetkeys" => {
                self.all_keys = false;
                self.keys.clear();
            }
            "allchannels" | "&*" => {
                self.all_channels = true;
                self.channels.clear();
            }
            "resetchannels" => {
                self.all_channels = false;
                self.channels.clear();
            }
            "allcommands" | "+@all" => self.all(true),
            "nocommands" | "-@all" => self.all(false),
            _ => return self.apply_pattern_or_command(op),
        }
        Ok(())
    }

    fn apply_pattern_or_command(&mut self, op: &str) -> Result<(), RuleError> {
        let b = op.as_bytes();
        match b.first() {
            Some(b'~') | Some(b'%') => {
                if self.all_keys {
                    return Err(RuleError::AfterAllKeys);
                }
                let (access, rest) = if b[0] == b'%' {
                    // `%R~pat`, `%W~pat`, `%RW~pat`; as in Redis, a rule
                    // without `~` names the empty pattern, one without R or
                    // W is an error.
                    let mut access = Access::default();
                    let mut at = 1;
                    while at < b.len() {
                        match b[at].to_ascii_uppercase() {
                            b'R' if !access.read => access.read = true,
                            b'W' if !access.write => access.write = true,
                            b'~' => {
                                at += 1;
                                break;
                            }
                            _ => return Err(RuleError::Syntax),
                        }
                        at += 1;
                    }
                    if !access.read && !access.write {
                        return Err(RuleError::Syntax);
                    }
                    (access, &b[at.min(b.len())..])
                } else {
                    (RW, &b[1..])
                };
                if rest.contains(&b' ') || rest.contains(&0) {
                    return Err(RuleError::Syntax);
                }
                match self.keys.iter_mut().find(|k| k.pattern == rest) {
                    Some(k) => {
                        k.access.read |= access.read;
                        k.access.write |= access.write;
                    }
                    None => self.keys.push(KeyPattern {
                        pattern: rest.to_vec(),
                        access,
                    }),
                }
            }
            Some(b'&') => {
                if self.all_channels {
                    return Err(RuleError::AfterAllChannels);
                }
                let rest = &b[1..];
                if rest.contains(&b' ') || rest.contains(&0) {
                    return Err(RuleError::Syntax);
                }
                if !self.channels.iter().any(|c| c == rest) {
                    self.channels.push(rest.to_vec());
                }
            }
            Some(&sign @ (b'+' | b'-')) => {
                let on = sign == b'+';
                let name = &op[1..];
                if let Some(category) = name.strip_prefix('@') {
                    return self.change_category(&category.to_ascii_lowercase(), on);
                }
                if on {
                    if let Some((cmd, sub)) = name.rsplit_once('|') {
                        return self.allow_first_arg(cmd, sub, name);
                    }
                }
                let idx = TABLE
                    .index(name.as_bytes())
                    .filter(|&i| !TABLE.all[i].name.starts_with("debug|"))
                    .ok_or(RuleError::Unknown)?;
                self.change(idx, on);
            }
            _ => return Err(RuleError::Syntax),
        }
        Ok(())
    }

    /// `+container|sub` allows a subcommand; `+cmd|arg` (a command without
    /// subcommands) allows it with that first argument only.
    fn allow_first_arg(&mut self, cmd: &str, sub: &str, whole: &str) -> Result<(), RuleError> {
        let idx = TABLE.index(cmd.as_bytes()).ok_or(RuleError::Unknown)?;
        if TABLE.all[idx].name.contains('|') {
            return Err(RuleError::SubcommandFirstArg);
        }
        if sub.is_empty() {
            return Err(RuleError::Syntax);
        }
        if !TABLE.all[idx].subcommands.is_empty() && TABLE.all[idx].name != "debug" {
            let i = TABLE.index(whole.as_bytes()).ok_or(RuleError::Unknown)?;
            self.change(i, true);
            return Ok(());
        }
        let args = self.first_args.entry(idx).or_default();
        let sub = sub.to_ascii_lowercase();
        if !args.contains(&sub) {
            args.push(sub);
        }
        Ok(())
    }

    fn unrestricted(&self) -> bool {
        self.all_commands && self.all_keys && self.all_channels
    }

    /// Whether this selector lets `argv` run as `spec` (row `idx`), and if
    /// not, why.
    fn check(&self, idx: usize, spec: &Spec, argv: &[bytes::Bytes]) -> Result<(), Denied> {
        if !self.all_commands && !spec.has(crate::command::flags::NO_AUTH) && !self.allowed(idx) {
            let arg = if spec.name.contains('|') { 2 } else { 1 };
            let ok = argv.get(arg).is_some_and(|a| {
                self.first_args
                    .get(&idx)
                    .is_some_and(|l| l.iter().any(|s| a.eq_ignore_ascii_case(s.as_bytes())))
            });
            if !ok {
                return Err(Denied::Command);
            }
        }
        if !self.all_keys {
            let keys = acl_keys(spec, argv);
            for (ordinal, &pos) in keys.iter().enumerate() {
                let flags = spec.key_flags_of(argv, ordinal);
                // A shard channel is routed as a key but is no key to ACL.
                if flags & crate::command::key_flags::NOT_KEY != 0 {
                    continue;
                }
                let need = key_needs(flags);
                let ok = self
                    .keys
                    .iter()
                    .any(|k| k.access.covers(need) && glob_match(&k.pattern, &argv[pos], false));
                if !ok {
                    return Err(Denied::Key(pos));
                }
            }
        }
        if !self.all_channels {
            for (pos, literal) in channel_positions(spec, argv) {
                if !self.channel_allowed(&argv[pos], literal) {
                    return Err(Denied::Channel(pos));
                }
            }
        }
        Ok(())
    }

    fn channel_allowed(&self, channel: &[u8], literal: bool) -> bool {
        self.all_channels
            || self.channels.iter().any(|p| {
                if literal {
                    p == channel
                } else {
                    glob_match(p, channel, false)
                }
            })
    }

    /// The command rules as Redis describes them: `+@all` or `-@all`, the
    /// categories that best cover the difference, then single commands.
    fn describe_commands(&self) -> String {
        let mut rules = Vec::new();
        let mut fake = Selector::new(false);
        let additive = !self.future;
        fake.all(!additive);
        rules.push(if additive { "-@all" } else { "+@all" }.to_string());
        // Greedily add the category that gets closest (Redis's algorithm),
        // judged on what is left to explain.
        let mut left = self.clone();
        let mut applied = vec![false; CATEGORIES.len()];
        loop {
            let mut best = None;
            let (mut mindiff, mut maxsame) = (usize::MAX, 0);
            for (j, cat) in CATEGORIES.iter().enumerate() {
                if applied[j] {
                    continue;
                }
                let (on, off) = left.count_category(cat);
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < mindiff || (diff == mindiff && same > maxsame)) {
                    best = Some(j);
                    mindiff = diff;
                    maxsame = same;
                }
            }
            let Some(j) = best else { break };
            let cat = CATEGORIES[j];
            let _ = fake.change_category(cat, additive);
            let _ = left.change_category(cat, !additive);
            rules.push(format!("{}@{cat}", if additive { '+' } else { '-' }));
            applied[j] = true;
        }
        for (i, s) in acl_rows() {
            let mine = self.allowed(i);
            if mine != fake.allowed(i) {
                rules.push(format!("{}{}", if mine { '+' } else { '-' }, s.name));
                fake.change(i, mine);
            }
            if !mine {
                for arg in self.first_args.get(&i).into_iter().flatten() {
                    rules.push(format!("+{}|{arg}", s.name));
                }
            }
        }
        rules.join(" ")
    }

    fn count_category(&self, category: &str) -> (usize, usize) {
        let (mut on, mut off) = (0, 0);
        for (i, s) in acl_rows() {
            if s.acl_categories().contains(&category) {
                if self.allowed(i) {
                    on += 1;
                } else {
                    off += 1;
                }
            }
        }
        (on, off)
    }

    fn describe_keys(&self) -> String {
        if self.all_keys {
            return "~*".to_string();
        }
        let pats: Vec<String> = self.keys.iter().map(KeyPattern::describe).collect();
        pats.join(" ")
    }

    fn describe_channels(&self) -> String {
        if self.all_channels {
            return "&*".to_string();
        }
        let pats: Vec<String> = self
            .channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect();
        pats.join(" ")
    }

    /// `~... &... +@...` as `ACL LIST` writes a selector.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        let keys = self.describe_keys();
        if !keys.is_empty() {
            parts.push(keys);
        }
        if self.all_channels {
            parts.push("&*".to_string());
        } else {
            parts.push("resetchannels".to_string());
            let channels = self.describe_channels();
            if !channels.is_empty() {
                parts.push(channels);
            }
        }
        parts.push(self.describe_commands());
        parts.join(" ")
    }

    /// `commands`, `keys`, `channels` as ACL GETUSER shows them.
    pub fn fields(&self) -> [(&'static str, String); 3] {
        [
            ("commands", self.describe_commands()),
            ("keys", self.describe_keys()),
            ("channels", self.describe_channels()),
        ]
    }
}

/// Why a command was refused: the argument at the position is the key or
/// channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Command,
    Key(usize),
    Channel(usize),
}

impl Denied {
    /// ACL LOG's reason.
    pub fn reason(self) -> &'static str {
        match self {
            Denied::Command => "command",
            Denied::Key(_) => "key",
            Denied::Channel(_) => "channel",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Denied::Command => 0,
            Denied::Key(_) => 1,
            Denied::Channel(_) => 2,
        }
    }

    fn pos(self) -> usize {
        match self {
            Denied::Command => 0,
            Denied::Key(p) | Denied::Channel(p) => p,
        }
    }
}

/// The command table as ACL sees it: every row but DEBUG's subcommands,
/// which Shoal declares for its own dispatch and Redis does not have
/// (DEBUG is one command there, its words first arguments).
pub fn acl_rows() -> impl Iterator<Item = (usize, &'static Spec)> {
    TABLE
        .all
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, s)| !s.name.starts_with("debug|"))
}

/// The row ACL judges a command by: its own, but DEBUG's subcommands are
/// DEBUG, one command to Redis whose words are first arguments (what
/// `+debug|digest` allows) and whose name NOPERM gives.
pub fn acl_row(idx: usize, spec: &'static Spec) -> (usize, &'static Spec) {
    match TABLE.index(b"debug") {
        Some(i) if spec.name.starts_with("debug|") => (i, TABLE.all[i]),
        _ => (idx, spec),
    }
}

/// The access a key needs, from what the command does with it (its key
/// flags, as Redis's ACL reads its key specifications): one it returns
/// something of (ACCESS) needs read, one it changes (INSERT, DELETE,
/// UPDATE) write; one it only tells of (EXISTS, TYPE, STRLEN) needs
/// neither, so any pattern naming it will do.
fn key_needs(flags: u16) -> Access {
    use crate::command::key_flags::{ACCESS, DELETE, INSERT, UPDATE};
    Access {
        read: flags & ACCESS != 0,
        write: flags & (INSERT | DELETE | UPDATE) != 0,
    }
}

/// The keys ACL checks: the command's, but a key count larger than the
/// arguments left names none (as Redis's key extraction gives up on it;
/// the command then fails its own syntax check).
fn acl_keys(spec: &Spec, argv: &[bytes::Bytes]) -> Vec<usize> {
    let mut keys = spec.key_indexes(argv);
    let at = spec.keys.numkeys;
    if at > 0 {
        let at = at as usize;
        let count = argv
            .get(at)
            .and_then(|a| crate::protocol::request::parse_i64(a))
            .unwrap_or(0);
        if count > argv.len().saturating_sub(at + 1) as i64 {
            keys.retain(|&k| k <= at);
        }
    }
    keys
}

/// The channels a command names: `(position, literal)`, literal for
/// PSUBSCRIBE's patterns, which must equal an allowed pattern.
fn channel_positions(spec: &Spec, argv: &[bytes::Bytes]) -> Vec<(usize, bool)> {
    match spec.name {
        "publish" | "spublish" => vec![(1, false)],
        "subscribe" | "ssubscribe" => (1..argv.len()).map(|i| (i, false)).collect(),
        "psubscribe" => (1..argv.len()).map(|i| (i, true)).collect(),
        _ => Vec::new(),
    }
}

/// One ACL user.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    pub nopass: bool,
    /// `skip-sanitize-payload` (`Some(false)`) or `sanitize-payload`.
    sanitize: Option<bool>,
    /// Hex SHA-256 of each password.
    pub passwords: Vec<String>,
    /// The root selector first.
    pub selectors: Vec<Selector>,
    /// One of its selectors allows everything.
    pub unrestricted: bool,
    /// `acl-pubsub-default allchannels` as its rules are applied: new
    /// selectors and `reset` allow every channel.
    pubsub_all: bool,
}

fn hash(password: &[u8]) -> String {
    hex(&Sha256::digest(password))
}

impl User {
    fn new(name: &str, pubsub_all: bool) -> User {
        User {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            sanitize: None,
            passwords: Vec::new(),
            selectors: vec![Selector::new(pubsub_all)],
            unrestricted: false,
            pubsub_all,
        }
    }

    /// What a connection of a deleted user runs as until it is closed:
    /// nothing.
    pub fn removed(name: &str) -> User {
        User::new(name, false)
    }

    fn default_user() -> User {
        let mut u = User::new("default", false);
        for op in ["+@all", "~*", "&*", "on", "nopass"] {
            u.apply(op).expect("the default user's rules are valid");
        }
        u
    }

    /// Applies one `ACL SETUSER` rule (Redis's ACLSetUser).
    pub fn apply(&mut self, op: &str) -> Result<(), RuleError> {
        let lower = op.to_ascii_lowercase();
        match lower.as_str() {
            "" => {}
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "skip-sanitize-payload" => self.sanitize = Some(false),
            "sanitize-payload" => self.sanitize = Some(true),
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "clearselectors" => self.selectors.truncate(1),
            "reset" => {
                for op in [
                    "resetpass",
                    "resetkeys",
                    "resetchannels",
                    "off",
                    "sanitize-payload",
                    "clearselectors",
                    "-@all",
                ] {
                    self.apply(op)?;
                }
                if self.pubsub_all {
                    self.apply("allchannels")?;
                }
            }
            _ => {
                let b = op.as_bytes();
                match b[0] {
                    b'>' | b'#' => {
                        let h = if b[0] == b'>' {
                            hash(&b[1..])
                        } else {
                            valid_hash(&op[1..])?
                        };
                        if !self.passwords.contains(&h) {
                            self.passwords.push(h);
                        }
                        self.nopass = false;
                    }
                    b'<' | b'!' => {
                        let h = if b[0] == b'<' {
                            hash(&b[1..])
                        } else {
                            valid_hash(&op[1..])?
                        };
                        let at = self
                            .passwords
                            .iter()
                            .position(|p| *p == h)
                            .ok_or(RuleError::NoSuchPassword)?;
                        self.passwords.remove(at);
                    }
                    b'(' if b.len() > 1 && b[b.len() - 1] == b')' => {
                        let mut s = Selector::new(self.pubsub_all);
                        for w in op[1..op.len() - 1].split_whitespace() {
                            s.apply(w)?;
                        }
                        self.selectors.push(s);
                    }
                    _ => self.selectors[0].apply(op)?,
                }
            }
        }
        self.unrestricted = self.selectors.iter().any(Selector::unrestricted);
        Ok(())
    }

    /// Whether `password` opens this user (an enabled one).
    pub fn accepts(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let h = hash(password);
        // The hashes are compared whole, whatever matches first.
        self.passwords
            .iter()
            .fold(false, |found, p| found | (p.as_bytes() == h.as_bytes()))
    }

    /// Whether this user may run `argv` as `spec` (row `idx`): the first
    /// selector that allows it, or the most telling refusal (a channel
    /// over a key over a command, then the later argument).
    pub fn check(
        &self,
        idx: usize,
        spec: &'static Spec,
        argv: &[bytes::Bytes],
    ) -> Result<(), Denied> {
        if self.unrestricted {
            return Ok(());
        }
        let (idx, spec) = acl_row(idx, spec);
        let mut worst = Denied::Command;
        for s in &self.selectors {
            match s.check(idx, spec, argv) {
                Ok(()) => return Ok(()),
                Err(d) => {
                    if (d.rank(), d.pos()) > (worst.rank(), worst.pos()) {
                        worst = d;
                    }
                }
            }
        }
        Err(worst)
    }

    /// Whether one selector lets this user run `argv` as `spec` and read
    /// any key (`~*`): what SORT's BY and GET need, whose keys come from
    /// patterns.
    pub fn reads_any_key(&self, idx: usize, spec: &'static Spec, argv: &[bytes::Bytes]) -> bool {
        let (idx, spec) = acl_row(idx, spec);
        self.unrestricted
            || self.selectors.iter().any(|s| {
                let any = s.all_keys || s.keys.iter().any(|k| k.pattern == b"*" && k.access.read);
                any && s.check(idx, spec, argv).is_ok()
            })
    }

    /// Whether `new` (this user changed) may refuse a subscription this
    /// one allowed: some channel pattern of this one is in none of its
    /// lists (Redis's test before closing subscribers).
    pub fn channels_narrowed_by(&self, new: &User) -> bool {
        if new.selectors.iter().any(|s| s.all_channels) {
            return false;
        }
        let kept: Vec<&Vec<u8>> = new.selectors.iter().flat_map(|s| &s.channels).collect();
        self.selectors
            .iter()
            .any(|s| s.all_channels || s.channels.iter().any(|c| !kept.contains(&c)))
    }

    /// The user's flags as ACL GETUSER lists them.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut f = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            f.push("nopass");
        }
        match self.sanitize {
            Some(false) => f.push("skip-sanitize-payload"),
            Some(true) => f.push("sanitize-payload"),
            None => {}
        }
        f
    }

    /// `user <name> ...` as ACL LIST and ACL SAVE write it.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = vec!["user".into(), self.name.clone()];
        parts.extend(self.flags().iter().map(|s| s.to_string()));
        parts.extend(self.passwords.iter().map(|p| format!("#{p}")));
        parts.push(self.selectors[0].describe());
        for s in &self.selectors[1..] {
            parts.push(format!("({})", s.describe()));
        }
        parts.join(" ")
    }
}

fn valid_hash(h: &str) -> Result<String, RuleError> {
    let ok = h.len() == 64
        && h.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if ok {
        Ok(h.to_string())
    } else {
        Err(RuleError::BadHash)
    }
}

/// Joins `(` ... `)` words of one selector given as several arguments, as
/// Redis does; the position of an unclosed one is the error.
pub fn merge_selectors(ops: &[String]) -> Result<Vec<String>, usize> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, op) in ops.iter().enumerate() {
        match &mut open {
            Some((_, s)) => {
                s.push(' ');
                s.push_str(op);
                if op.ends_with(')') {
                    out.push(open.take().expect("open").1);
                }
            }
            None if op.starts_with('(') && !op.ends_with(')') => open = Some((i, op.clone())),
            None => out.push(op.clone()),
        }
    }
    match open {
        Some((i, _)) => Err(i),
        None => Ok(out),
    }
}

/// A user as it was (`None`: new) and as it is.
pub type Changed = (Option<Arc<User>>, Arc<User>);

/// Every user, by name, and a generation counter that moves whenever any
/// changes.
pub struct Users {
    map: RwLock<BTreeMap<String, Arc<User>>>,
    generation: AtomicU64,
    /// `acl-pubsub-default allchannels`.
    pubsub_all: AtomicBool,
}

impl Default for Users {
    fn default() -> Users {
        let mut map = BTreeMap::new();
        map.insert("default".to_string(), Arc::new(User::default_user()));
        Users {
            map: RwLock::new(map),
            generation: AtomicU64::new(0),
            pubsub_all: AtomicBool::new(false),
        }
    }
}

impl Users {
    /// `acl-pubsub-default`: the channels of users created from now on.
    pub fn set_pubsub_default(&self, value: &str) {
        self.pubsub_all.store(value == "allchannels", Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    pub fn get(&self, name: &str) -> Option<Arc<User>> {
        self.map.read().get(name).cloned()
    }

    pub fn default_user(&self) -> Arc<User> {
        self.get("default").expect("the default user always exists")
    }

    pub fn all(&self) -> Vec<Arc<User>> {
        self.map.read().values().cloned().collect()
    }

    /// Applies `ops` to the user `name` (created if new) all or nothing;
    /// returns the user as it was and as it is now.
    /// A refused rule is told by its position in `ops`.
    pub fn set_user(&self, name: &str, ops: &[String]) -> Result<Changed, (usize, RuleError)> {
        let mut map = self.map.write();
        let old = map.get(name).cloned();
        let pubsub_all = self.pubsub_all.load(Relaxed);
        let mut u = old
            .as_deref()
            .cloned()
            .unwrap_or_else(|| User::new(name, pubsub_all));
        u.pubsub_all = pubsub_all;
        for (i, op) in ops.iter().enumerate() {
            u.apply(op).map_err(|e| (i, e))?;
        }
        let new = Arc::new(u);
        map.insert(name.to_string(), new.clone());
        self.generation.fetch_add(1, Relaxed);
        Ok((old, new))
    }

    /// Removes users; returns those that existed.
    pub fn delete(&self, names: &[String]) -> Vec<Arc<User>> {
        let mut map = self.map.write();
        let gone: Vec<Arc<User>> = names.iter().filter_map(|n| map.remove(n)).collect();
        self.generation.fetch_add(1, Relaxed);
        gone
    }

    /// `requirepass`: the default user's one password, or none.
    pub fn set_requirepass(&self, pass: &str) {
        let ops = if pass.is_empty() {
            vec!["nopass".to_string()]
        } else {
            vec!["resetpass".to_string(), format!(">{pass}")]
        };
        self.set_user("default", &ops)
            .expect("password rules are valid");
    }

    /// Replaces every user by those `lines` describe (`user <name> <rule>
    /// ...`), all or nothing; a default user not described keeps what it
    /// had, as in Redis's ACL LOAD. The errors name the line.
    pub fn load(&self, source: &str, lines: &[(usize, Vec<String>)]) -> Result<(), String> {
        let mut fresh: BTreeMap<String, Arc<User>> = BTreeMap::new();
        let mut errors = String::new();
        for (n, words) in lines {
            if words.len() < 2 || words[0] != "user" {
                errors.push_str(&format!(
                    "{source}:{n} should start with user keyword followed by the username. "
                ));
                continue;
            }
            let name = &words[1];
            if name.contains(' ') || name.contains('\0') {
                errors.push_str(&format!(
                    "'{source}:{n}: username '{name}' contains invalid characters. "
                ));
                continue;
            }
            if fresh.contains_key(name) {
                errors.push_str(&format!(
                    "WARNING: Duplicate user '{name}' found on line {n}. "
                ));
                continue;
            }
            let ops = match merge_selectors(&words[2..]) {
                Ok(ops) => ops,
                Err(_) => {
                    errors.push_str(&format!(
                        "{source}:{n}: Unmatched parenthesis in selector definition."
                    ));
                    continue;
                }
            };
            let mut u = User::new(name, self.pubsub_all.load(Relaxed));
            for op in &ops {
                if let Err(e) = u.apply(op) {
                    errors.push_str(&format!("{source}:{n}: {e}. "));
                }
            }
            fresh.insert(name.clone(), Arc::new(u));
        }
        if !errors.is_empty() {
            errors.push_str(
                "WARNING: ACL errors detected, no change to the previously active ACL rules was performed",
            );
            return Err(errors);
        }
        let mut map = self.map.write();
        if !fresh.contains_key("default") {
            let keep = map.get("default").cloned().expect("default user");
            fresh.insert("default".to_string(), keep);
        }
        *map = fresh;
        self.generation.fetch_add(1, Relaxed);
        Ok(())
    }

    /// ACL LIST's lines, by user name.
    pub fn describe(&self) -> Vec<String> {
        self.map.read().values().map(|u| u.describe()).collect()
    }
}

/// The numbered `user ...` lines of an ACL file (comments and blank lines
/// skipped).
pub fn file_lines(text: &str) -> Vec<(usize, Vec<String>)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let words = l.split_whitespace().map(str::to_string).collect();
            (i + 1, words)
        })
        .collect()
}

/// Sets up the users a node starts with: `requirepass`, then the `user`
/// lines of its configuration file or its `aclfile`. An error stops the
/// start, as in Redis: a node must not serve with rules it did not read.
pub fn load_at_startup(server: &super::Server) -> Result<(), String> {
    let (pass, aclfile, lines) = {
        let cfg = server.config.read();
        server
            .users
            .set_pubsub_default(cfg.get("acl-pubsub-default"));
        (
            cfg.get("requirepass").to_string(),
            cfg.get("aclfile").to_string(),
            cfg.users.clone(),
        )
    };
    if !pass.is_empty() {
        server.users.set_requirepass(&pass);
    }
    if !aclfile.is_empty() && !lines.is_empty() {
        return Err("Configuring Shoal with users defined in the configuration file and an aclfile at the same time is invalid: define users in one place or the other.".into());
    }
    if !lines.is_empty() {
        server
            .users
            .load("config", &lines)
            .map_err(|e| format!("Critical error while loading ACLs: {e}"))?;
    }
    if !aclfile.is_empty() {
        load_file(server, &aclfile)
            .map_err(|e| format!("Aborting startup because of ACL errors: {e}"))?;
    }
    Ok(())
}

/// Where `aclfile` is: a relative path is under `dir`, as in Redis
/// (which works from its `dir`).
fn resolve(server: &super::Server, path: &str) -> std::path::PathBuf {
    let dir = server.config.read().get("dir").to_string();
    std::path::Path::new(&dir).join(path)
}

/// ACL LOAD: the users of `aclfile`, all or nothing.
pub fn load_file(server: &super::Server, path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(resolve(server, path))
        .map_err(|e| format!("Error loading ACLs, opening file '{path}': {e}"))?;
    server.users.load(path, &file_lines(&text))
}

/// ACL SAVE: every user to `aclfile`, through a temporary file renamed
/// over it, so a crash leaves the old file or the new one.
pub fn save_file(server: &super::Server, path: &str) -> std::io::Result<()> {
    let mut text = server.users.describe().join("\n");
    text.push('\n');
    let path = resolve(server, path);
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = std::fs::write(&tmp, text).and_then(|()| {
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ACL LIST writes of a user reads back as the same user: the
    /// command rules are rebuilt from the bits (Redis checks the same
    /// after describing).
    #[test]
    fn a_described_user_reads_back_the_same() {
        let cases: &[&[&str]] = &[
            &[
                "on", ">pw", "~app:*", "&c*", "-@all", "+get", "+@list", "-lpush", "%R~ro:*",
            ],
            &[
                "+@all",
                "-@hash",
                "+hget",
                "-config|set",
                "allkeys",
                "allchannels",
            ],
            &[
                "+@read",
                "-@string",
                "+select|0",
                "+client|list",
                "%W~w:*",
                "%RW~b",
            ],
            &[
                "nocommands",
                "+@write",
                "-@dangerous",
                "(~a* +get)",
                "(+set %R~x)",
            ],
        ];
        for rules in cases {
            let mut u = User::new("u", false);
            for r in *rules {
                u.apply(r).unwrap_or_else(|e| panic!("{r}: {e}"));
            }
            let line = u.describe();
            let words: Vec<String> = line.split(' ').skip(2).map(str::to_string).collect();
            let mut back = User::new("u", false);
            for op in merge_selectors(&words).unwrap() {
                back.apply(&op).unwrap_or_else(|e| panic!("{op}: {e}"));
            }
            assert_eq!(back.describe(), line, "{rules:?}");
            for (a, b) in u.selectors.iter().zip(&back.selectors) {
                assert_eq!(a.commands, b.commands, "{rules:?}: {line}");
                assert_eq!(a.first_args, b.first_args, "{rules:?}");
            }
        }
    }

    #[test]
    fn passwords_and_flags() {
        let mut u = User::new("u", false);
        assert!(!u.accepts(b"x"), "a new user is off");
        u.apply("on").unwrap();
        assert!(!u.accepts(b"x"), "and has no password");
        u.apply(">x").unwrap();
        assert!(u.accepts(b"x") && !u.accepts(b"y"));
        assert_eq!(u.apply("<y"), Err(RuleError::NoSuchPassword));
        u.apply("<x").unwrap();
        assert!(!u.accepts(b"x"));
        u.apply("nopass").unwrap();
        assert!(u.accepts(b"anything"));
        assert_eq!(u.flags(), ["on", "nopass"]);
    }
}
