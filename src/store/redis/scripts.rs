//! The Lua scripts, compiled into the binary.
//!
//! Every session script is `lua/session_base.lua` (keys, arguments, publishing a change), the shared
//! prelude (`lua/session_prelude.lua`: header reads and writes, election, commit), then the
//! script's own body. A script that decides nothing (`lua/write_plans.lua`) runs on the base alone.
//! Join and leave put their planned fast path (`lua/*_planned.lua`) between the
//! base and the prelude, so that a written plan returns before the prelude's functions are made.
//! The message history scripts (`lua/publish.lua`, `lua/history.lua`) stand alone: they touch only
//! a session's stream and history keys; the server API's publish (`lua/server_publish.lua`) puts a
//! guard on the session's members before the publish script. Each file in `lua/` starts with a comment that says what
//! it does and what it returns.

use ::redis::Script;

macro_rules! session_script {
    (base_only $file:literal) => {
        Script::new(concat!(
            include_str!("lua/session_base.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/session_base.lua"),
            include_str!("lua/session_prelude.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
    ($planned:literal, $file:literal) => {
        Script::new(concat!(
            include_str!("lua/session_base.lua"),
            include_str!(concat!("lua/", $planned)),
            include_str!("lua/session_prelude.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
}

macro_rules! global_script {
    ($file:literal) => {
        Script::new(include_str!(concat!("lua/", $file)))
    };
}

/// One [`Script`] per operation; [`Script::invoke_async`] sends EVALSHA and reloads the script
/// when Redis does not know it (after `SCRIPT FLUSH` or a restart).
pub(super) struct Scripts {
    pub join: Script,
    pub leave: Script,
    pub write_plans: Script,
    pub update: Script,
    pub suspend: Script,
    pub expire: Script,
    pub graces_due: Script,
    pub resume: Script,
    pub end: Script,
    pub remove_instance: Script,
    pub reassert: Script,
    pub view: Script,
    pub changes: Script,
    pub counts: Script,
    pub touch: Script,
    pub register: Script,
    pub renew: Script,
    pub expired: Script,
    pub deregister: Script,
    pub forget: Script,
    pub claim: Script,
    pub publish: Script,
    pub history: Script,
    pub deliverer: Script,
    pub acknowledge: Script,
    pub untrack: Script,
    /// The server API ([`crate::store::Operator`]).
    pub kick: Script,
    pub server_publish: Script,
}

impl Scripts {
    pub fn load() -> Scripts {
        Scripts {
            join: session_script!("join_planned.lua", "join.lua"),
            leave: session_script!("leave_planned.lua", "leave.lua"),
            write_plans: session_script!(base_only "write_plans.lua"),
            update: session_script!("update.lua"),
            suspend: session_script!("suspend.lua"),
            expire: session_script!("expire.lua"),
            graces_due: global_script!("graces_due.lua"),
            resume: session_script!("resume.lua"),
            end: session_script!("end.lua"),
            remove_instance: session_script!("remove_instance.lua"),
            reassert: session_script!("reassert.lua"),
            view: session_script!("view.lua"),
            changes: session_script!("changes.lua"),
            counts: session_script!("counts.lua"),
            touch: session_script!("touch.lua"),
            register: global_script!("register.lua"),
            renew: global_script!("renew.lua"),
            expired: global_script!("expired.lua"),
            deregister: global_script!("deregister.lua"),
            forget: global_script!("forget.lua"),
            claim: global_script!("claim.lua"),
            publish: global_script!("publish.lua"),
            history: global_script!("history.lua"),
            deliverer: global_script!("deliverer.lua"),
            acknowledge: global_script!("acknowledge.lua"),
            untrack: global_script!("untrack.lua"),
            kick: session_script!("kick.lua"),
            server_publish: Script::new(concat!(
                include_str!("lua/server_publish.lua"),
                include_str!("lua/publish.lua")
            )),
        }
    }
}
