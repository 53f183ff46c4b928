//! gmemtest's host-side engine. Data flows one way through these stages:
//!
//! ```text
//! kernels/VARIANT.yaml --kernel::build--> bzImage (cached by content hash)
//! cases/CASE.yaml -------case----------> plan, cmdline, timeout
//! initramfs/ ------------pack----------> initramfs.cpio.gz (init + probes + plan)
//!                  ------boot----------> console (ttyS0) + results (ttyS1)
//!                  ------report--------> crashes found and classified
//!                  ------outcome-------> normalized Outcome
//!                  ------snapshot------> snapshots/CASE@VARIANT.snap, verdict
//! ```
//!
//! `setup` installs what the stages need (`vng` wraps virtme-ng, the other
//! way to boot); `suite` loads the cases and recipes and prepares what they
//! need; `pair` drives the stages for one (case, kernel) pair to its
//! `verdict`, and `batch` for many: several cases in one boot, several boots
//! at once. `session` owns a whole test session (plan, rounds, flakes,
//! reports, the overall result); `flakes` compares repeated runs. Library
//! code returns errors with context; only xtask decides exit codes.

pub mod accel;
pub mod batch;
pub mod bench;
pub mod bisect;
pub mod boot;
pub mod case;
pub mod children;
pub mod cmdline;
pub mod compare;
pub mod decode;
pub mod fault;
pub mod flakes;
pub mod fuzz;
pub mod interrupt;
pub mod kernel;
pub mod lkdtm;
pub mod memo;
pub mod monitor;
pub mod nmi;
pub mod normalize;
pub mod options;
pub mod outcome;
pub mod pack;
pub mod pair;
pub mod paths;
pub mod prepared;
pub mod report;
pub mod saved_vm;
pub mod session;
pub mod setup;
pub mod shell;
pub mod snapshot;
pub mod suite;
pub mod summary;
pub mod triage;
pub mod verdict;
pub mod vng;
pub mod walk;
pub mod yaml;
