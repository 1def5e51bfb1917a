//! Hooks around `main`: the `.init_array` entry (a mechanism; what it runs is given from
//! above) and `atexit`.

use std::ffi::{CStr, OsString, c_char, c_int};
use std::io;
use std::os::unix::ffi::OsStringExt;

/// What the `.init_array` hook is given: the process's arguments, before `main`.
pub(crate) struct Startup {
    argc: c_int,
    argv: *const *const c_char,
}

impl Startup {
    /// The arguments the loader passed (`argv[0]` first); empty when there were none.
    pub(crate) fn args(&self) -> Vec<OsString> {
        if self.argv.is_null() || self.argc < 1 {
            return Vec::new();
        }
        (0..self.argc as usize)
            .map(|i| {
                // SAFETY: the loader passes `argc` valid, NUL-terminated strings in `argv`.
                let arg = unsafe { CStr::from_ptr(*self.argv.add(i)) };
                OsString::from_vec(arg.to_bytes().to_vec())
            })
            .collect()
    }

    /// Removes `name` from the environment and returns its value, so that nothing the process
    /// starts inherits it.
    pub(crate) fn take_env(&self, name: &str) -> Option<OsString> {
        let value = std::env::var_os(name)?;
        // SAFETY: `.init_array` entries run before `main`, on the only thread of the process:
        // nothing can read the environment concurrently.
        unsafe { std::env::remove_var(name) };
        Some(value)
    }
}

/// Registers `$dispatch: fn(&Startup)` to run before `main` in every binary that links
/// daemonic, and defines `anchor()` beside it. The hook is a mechanism; what a process started
/// by daemonic does before `main` is decided by the module that invokes this (dependency
/// inversion: this module knows neither guardians nor targets). Code that relies on the hook
/// calls `anchor()`, so that the linker keeps the object that holds it.
macro_rules! startup_hook {
    ($dispatch:path) => {
        extern "C" fn startup_hook(
            argc: std::ffi::c_int,
            argv: *const *const std::ffi::c_char,
            _envp: *const *const std::ffi::c_char,
        ) {
            // SAFETY: the loader calls `.init_array` entries with its own (argc, argv), before
            // `main`, on the only thread of the process.
            #[allow(unsafe_code)]
            let startup = unsafe { $crate::sys::Startup::new(argc, argv) };
            $dispatch(&startup)
        }

        /// Registered in `.init_array`; [`anchor`] keeps it linked. The one `unsafe` written
        /// outside this module's files is this attribute, expanded where the hook is wired.
        #[used]
        #[allow(unsafe_code)]
        // SAFETY: `.init_array` entries are called by the loader with (argc, argv, envp), which
        // is the signature of `startup_hook`.
        #[unsafe(link_section = ".init_array")]
        static STARTUP_HOOK: extern "C" fn(
            std::ffi::c_int,
            *const *const std::ffi::c_char,
            *const *const std::ffi::c_char,
        ) = startup_hook;

        /// Referenced by code that relies on the hook, so that the linker keeps the object with
        /// the hook in every binary that uses that code.
        pub(crate) fn anchor() {
            std::hint::black_box(&STARTUP_HOOK);
        }
    };
}
pub(crate) use startup_hook;

impl Startup {
    /// Made only by [`startup_hook!`] from what the loader passed.
    ///
    /// # Safety
    /// `argv` holds `argc` valid, NUL-terminated strings (the loader's arguments to an
    /// `.init_array` entry), and the process runs one thread, before `main`: [`Startup::args`]
    /// reads those strings and [`Startup::take_env`] changes the environment.
    pub(crate) unsafe fn new(argc: c_int, argv: *const *const c_char) -> Startup {
        Startup { argc, argv }
    }
}

/// Runs `f` when the process exits through `exit(3)`: after `main` returns or at
/// `std::process::exit`, not after a signal or `_exit`.
pub(crate) fn at_exit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: atexit only records the function pointer, which is valid for the whole program.
    if unsafe { libc::atexit(f) } != 0 {
        return Err(io::Error::other("atexit refused another handler"));
    }
    Ok(())
}
