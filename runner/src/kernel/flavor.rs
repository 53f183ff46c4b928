//! Flavors: the same kernel variant built another way. A flavor adds config
//! fragments to a recipe and kernel parameters to every boot of its kernel;
//! the variant (its source, patches and own fragments) is unchanged.
//!
//! `debug` is the variant with the kernel's own checkers: KASAN (generic,
//! inline), KFENCE, lockdep, DEBUG_VM, DEBUG_PAGEALLOC, list and SLUB
//! debugging, page owner and page poisoning, the lockup and hung-task
//! detectors, FORTIFY_SOURCE, stack protector, stack guard pages, UBSAN's
//! bounds checks and hardened usercopy (`kernels/fragments/debug.config`),
//! the runtime ones switched on at boot ([`Flavor::boot_params`]).
//!
//! A flavored kernel has a name of its own, `VARIANT+FLAVOR`
//! (`stock-7.3+debug`): its cache entry, build directory and logs are its
//! own. Its outcomes name the variant, so they are compared with the
//! variant's snapshots (`CASE@stock-7.3.snap`): where a checker makes a case
//! differ, that is a finding, never a snapshot of its own.

use anyhow::{bail, Result};
use std::path::Path;

use super::recipe::{check_fragment, Recipe};

/// How a variant is built and booted.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    /// The variant as its recipe says.
    #[default]
    Normal,
    /// The variant with the kernel's checkers.
    Debug,
}

/// What separates a variant's name from its flavor's in a kernel's name. A
/// recipe's name never holds it (names are letters, digits, `_-.`).
const SEPARATOR: char = '+';

impl Flavor {
    pub const ALL: [Flavor; 2] = [Flavor::Normal, Flavor::Debug];

    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Normal => "normal",
            Flavor::Debug => "debug",
        }
    }

    /// The config fragments (paths inside `kernels/`) merged after the
    /// variant's own.
    pub fn fragments(self) -> &'static [&'static str] {
        match self {
            Flavor::Normal => &[],
            Flavor::Debug => &["fragments/debug.config"],
        }
    }

    /// Kernel parameters every boot of the flavor's kernel gets, on either
    /// backend: the checkers that are built in but act only when asked.
    pub fn boot_params(self) -> &'static [&'static str] {
        match self {
            Flavor::Normal => &[],
            Flavor::Debug => &[
                // Freed pages leave the direct map.
                "debug_pagealloc=on",
                // Sanity checks, red zones, poisoning, owner tracking: every cache.
                "slub_debug=FZPU",
                "page_owner=on",
                // Freed pages poisoned (written through the direct map), checked at allocation.
                "page_poison=1",
                // A guarded slab object every 10 ms rather than every 100.
                "kfence.sample_interval=10",
                // 4-level paging. With 5 (QEMU's `-cpu max` has LA57), an
                // interrupt in the window where identify_cpu() has cleared
                // the boot CPU's capabilities sees pgtable_l5_enabled()
                // false, and KASAN reports any direct-map address it checks
                // as a wild access (found by `cargo xtask fuzz`: "KASAN:
                // wild-memory-access Write in do_raw_spin_lock" at boot,
                // from get_cpu_vendor). A boot-time false report would fail
                // whatever case booted.
                "no5lvl",
                // The lockup detectors' thresholds, far above the kernel's
                // defaults (10 s, so a soft lockup at 20 s; a hung task at
                // 120 s) for what TCG does to time: a vCPU is a host thread
                // that a loaded 2-core host (two VMs of two vCPUs, a kernel
                // build) may leave unscheduled for seconds, and KASAN,
                // lockdep and page poisoning make every non-preemptible
                // section tens of times longer than on hardware. A soft
                // lockup is then reported after 60 s without scheduling, a
                // hard lockup (the buddy detector checks every 1.2 *
                // watchdog_thresh) after 36-72 s with interrupts off: no
                // real section is near either, and a lockup that is one
                // lasts forever. Hung tasks: uninterruptible for 240 s
                // without waking, more than the longest whole case takes on
                // this flavor (a KVM selftest, about 185 s), far from any
                // lock wait. The LKDTM corpus sets short ones for the
                // lockups it provokes (runner/src/lkdtm.rs).
                "watchdog_thresh=30",
                "sysctl.kernel.hung_task_timeout_secs=240",
                // Hardened usercopy's checks: built in (HARDENED_USERCOPY),
                // off unless HARDENED_USERCOPY_DEFAULT_ON, which the
                // fragment's allnoconfig base leaves off.
                "hardened_usercopy=on",
            ],
        }
    }

    /// The flavor's boot parameters followed by `extra` (a case's own).
    pub fn cmdline_with(self, extra: &str) -> String {
        let extra = extra.trim();
        let mut words: Vec<&str> = self.boot_params().to_vec();
        if !extra.is_empty() {
            words.push(extra);
        }
        words.join(" ")
    }

    /// How much longer a case's deadlines (the boot's, each step's, the
    /// silence that means a hang) are on this flavor's kernel: KASAN,
    /// lockdep and page poisoning under TCG make everything slower, and a
    /// case must not time out only because of that.
    pub fn deadline_factor(self) -> u64 {
        match self {
            Flavor::Normal => 1,
            Flavor::Debug => 4,
        }
    }

    /// The name of `variant`'s kernel in this flavor: the variant's own
    /// name, or `VARIANT+FLAVOR`.
    pub fn kernel_name(self, variant: &str) -> String {
        match self {
            Flavor::Normal => variant.to_string(),
            _ => format!("{variant}{SEPARATOR}{}", self.as_str()),
        }
    }

    /// The variant and flavor of a kernel name that [`Flavor::kernel_name`]
    /// made (a name without a flavor is the normal one).
    pub fn of_kernel(name: &str) -> (&str, Flavor) {
        match name.split_once(SEPARATOR) {
            Some((variant, f)) => match f.parse() {
                Ok(flavor) => (variant, flavor),
                Err(_) => (name, Flavor::Normal),
            },
            None => (name, Flavor::Normal),
        }
    }

    /// `recipe` (a variant as loaded) in this flavor: its name, its
    /// fragments with the flavor's after them (each checked as the recipe's
    /// own are). The normal flavor is the recipe itself.
    pub fn apply(self, recipe: &Recipe) -> Result<Recipe> {
        if recipe.flavor != Flavor::Normal {
            bail!(
                "kernel {}: already the {} flavor of {}",
                recipe.name,
                recipe.flavor,
                recipe.variant
            );
        }
        let mut r = recipe.clone();
        r.name = self.kernel_name(&recipe.variant);
        r.flavor = self;
        let kernels = recipe.file.parent().unwrap_or(Path::new("."));
        for rel in self.fragments() {
            let file = kernels.join(rel);
            let text = std::fs::read_to_string(&file).map_err(|e| {
                anyhow::anyhow!(
                    "the {self} flavor's fragment {}: {e}; expected a config fragment there",
                    file.display()
                )
            })?;
            check_fragment(&text).map_err(|(line, e)| {
                anyhow::anyhow!(
                    "the {self} flavor's fragment {} line {line}: {e}",
                    file.display()
                )
            })?;
            r.fragments.push(file);
        }
        Ok(r)
    }
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Flavor {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Flavor> {
        Flavor::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown flavor `{s}`: expected `normal` or `debug`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernels_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels")
    }

    fn stock() -> Recipe {
        Recipe::load_named(&kernels_dir(), "stock-7.3").unwrap()
    }

    #[test]
    fn the_debug_flavor_adds_its_fragment_after_the_variants() {
        let r = stock();
        let d = Flavor::Debug.apply(&r).unwrap();
        assert_eq!(d.name, "stock-7.3+debug");
        assert_eq!(d.variant, "stock-7.3");
        assert_eq!(d.flavor, Flavor::Debug);
        assert_eq!(d.fragments[..r.fragments.len()], r.fragments[..]);
        assert_eq!(
            d.fragments[r.fragments.len()..],
            [kernels_dir().join("fragments/debug.config")]
        );
        // The checkers the flavor is for, each asked for by the fragment.
        let text = std::fs::read_to_string(&d.fragments[r.fragments.len()]).unwrap();
        let asked: Vec<String> = crate::kernel::build::config_requests(&text)
            .into_iter()
            .map(|c| c.symbol)
            .collect();
        for s in [
            "KASAN",
            "KASAN_GENERIC",
            "KASAN_INLINE",
            "KFENCE",
            "PROVE_LOCKING",
            "DEBUG_ATOMIC_SLEEP",
            "DEBUG_VM",
            "DEBUG_VM_PGFLAGS",
            "DEBUG_PAGEALLOC",
            "DEBUG_LIST",
            "SLUB_DEBUG",
            "BUG_ON_DATA_CORRUPTION",
            "PAGE_OWNER",
            "PAGE_POISONING",
            "SOFTLOCKUP_DETECTOR",
            "HARDLOCKUP_DETECTOR_BUDDY",
            "DETECT_HUNG_TASK",
            "FORTIFY_SOURCE",
            "STACKPROTECTOR_STRONG",
            "VMAP_STACK",
            "UBSAN_BOUNDS",
            "HARDENED_USERCOPY",
            "SCHED_STACK_END_CHECK",
        ] {
            assert!(asked.iter().any(|a| a == s), "CONFIG_{s} not asked for");
        }
        // The normal flavor is the recipe as it is.
        let n = Flavor::Normal.apply(&r).unwrap();
        assert_eq!((n.name.as_str(), n.fragments.len()), ("stock-7.3", 2));
        // A flavor of a flavor is refused.
        let e = format!("{:#}", Flavor::Debug.apply(&d).unwrap_err());
        assert!(e.contains("already the debug flavor of stock-7.3"), "{e}");
    }

    #[test]
    fn boot_params_switch_the_runtime_checkers_on() {
        assert!(Flavor::Normal.boot_params().is_empty());
        let p = Flavor::Debug.boot_params();
        for want in [
            "debug_pagealloc=on",
            "page_owner=on",
            "page_poison=1",
            "hardened_usercopy=on",
        ] {
            assert!(p.contains(&want), "{want} missing from {p:?}");
        }
        assert!(p.iter().any(|x| x.starts_with("slub_debug=")));
        assert!(p.iter().any(|x| x.starts_with("kfence.sample_interval=")));
        // The lockup detectors' thresholds, well above the kernel's defaults
        // (10 s; a hung task at 120 s): TCG on a loaded host.
        let value = |key: &str| -> u64 {
            p.iter()
                .find_map(|x| x.strip_prefix(key))
                .unwrap_or_else(|| panic!("{key} missing from {p:?}"))
                .parse()
                .unwrap()
        };
        assert!(value("watchdog_thresh=") >= 30);
        assert!(value("sysctl.kernel.hung_task_timeout_secs=") >= 240);
        // Plain kernel parameters, as a case's own `cmdline` must be.
        crate::case::check_cmdline(&p.join(" ")).unwrap();
        // Before a case's own, which may say otherwise.
        let c = Flavor::Debug.cmdline_with(" oops=panic ");
        assert!(
            c.starts_with("debug_pagealloc=on ") && c.ends_with(" oops=panic"),
            "{c}"
        );
        assert_eq!(Flavor::Normal.cmdline_with("oops=panic"), "oops=panic");
        assert_eq!(Flavor::Normal.cmdline_with(""), "");
    }

    #[test]
    fn kernel_names_carry_the_flavor_and_give_it_back() {
        for f in Flavor::ALL {
            let name = f.kernel_name("nodirectmap-reviewed");
            assert_eq!(Flavor::of_kernel(&name), ("nodirectmap-reviewed", f));
            assert_eq!(f.to_string().parse::<Flavor>().unwrap(), f);
        }
        assert_eq!(Flavor::Debug.kernel_name("stock-7.3"), "stock-7.3+debug");
        assert_eq!(Flavor::Normal.kernel_name("stock-7.3"), "stock-7.3");
        assert_eq!(
            Flavor::of_kernel("bisect@abc"),
            ("bisect@abc", Flavor::Normal)
        );
        let e = "kasan".parse::<Flavor>().unwrap_err().to_string();
        assert!(e.contains("expected `normal` or `debug`"), "{e}");
    }
}
