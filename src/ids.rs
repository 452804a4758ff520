//! Names for the three kinds of id that travel everywhere, so a signature says which one it takes.
//!
//! All three are strings on the wire and in the store (`serde(transparent)`), and read as `&str`
//! wherever a plain string is wanted (`Deref`, `Borrow<str>` for map look-ups). A [`SessionId`] that
//! comes from a client is checked by [`crate::protocol::validate::session_id`] before it is made.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[derive(Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> $name {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> $name {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> $name {
                $name(id.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl ::redis::ToRedisArgs for $name {
            fn write_redis_args<W: ?Sized + ::redis::RedisWrite>(&self, out: &mut W) {
                out.write_arg(self.0.as_bytes())
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == &other.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_id!(
    /// A session (room) id: 1–128 characters of `[A-Za-z0-9_-]`.
    SessionId
);
string_id!(
    /// A connection id: a UUID minted by the server for every socket.
    ConnectionId
);
string_id!(
    /// One process start of an instance: `<name>#<12 hex>`; members and keys of an instance are
    /// keyed by it.
    Incarnation
);
