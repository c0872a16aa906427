//! The signal thread ("sw-signals"): turns SIGTERM/SIGINT into a shutdown request and
//! SIGHUP into a reload request for the coordinator. Nothing else happens in the handler
//! context: signal-hook's iterator delivers signals to this ordinary thread.
//!
//! It stops when `Signals::stop` closes the handle or the coordinator is gone.

use crate::coordinator::Control;
use crossbeam_channel::Sender;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals as HookSignals};
use std::thread::JoinHandle;

pub struct Signals {
    handle: Handle,
    thread: JoinHandle<()>,
}

impl Signals {
    pub fn start(control: Sender<Control>) -> std::io::Result<Signals> {
        let mut signals = HookSignals::new([SIGTERM, SIGINT, SIGHUP])?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("sw-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    match sig {
                        SIGHUP => {
                            crate::info!("SIGHUP received, reloading configuration");
                            if control.send(Control::Reload { reply: None }).is_err() {
                                break;
                            }
                        }
                        _ => {
                            crate::info!("termination requested, draining", signal = sig);
                            if control.send(Control::Shutdown).is_err() {
                                break;
                            }
                        }
                    }
                }
            })?;
        Ok(Signals { handle, thread })
    }

    pub fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}
