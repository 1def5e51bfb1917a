//! **Layer `runtime`**, above `backend`: families and their members while they run. A family is
//! founded ([`founding`]) and joined ([`family`]), its members are handles ([`member`]), a
//! guardian watches it from outside ([`guardian`]), `daemonic run` supervises one
//! ([`supervise`], with sd_notify in [`notify`]), [`inspect`] reads families back from the
//! cgroup tree, [`target`] carries Rust functions to the processes that run them, and
//! [`startup`] decides what a process daemonic started does before `main`.

pub(crate) mod family;
pub(crate) mod founding;
pub(crate) mod guardian;
pub mod inspect;
pub(crate) mod member;
pub(crate) mod notify;
pub(crate) mod startup;
pub(crate) mod supervise;
pub(crate) mod target;
