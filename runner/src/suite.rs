//! The suite: every case and recipe loaded and validated before anything
//! runs, narrowed to the pairs asked for, and what their runs need built
//! (the kernels, the guest binaries, the initramfs base).

use anyhow::Result;

use crate::accel::Accel;
use crate::case::{self, Case};
use crate::kernel::{self, Flavor, Recipe};
use crate::pack;
use crate::paths::Paths;

// The types a run of the suite is made of, where callers have always found
// them (each has its own module now).
pub use crate::options::{log_dir, BackendKind, RunOptions, VNG_BOOT_ALLOWANCE};
pub use crate::pair::{crash_report, gdb_command, run_pair};
pub use crate::prepared::Prepared;
pub use crate::summary::{junit_xml, summary_table};
pub use crate::verdict::{errored, BootMode, CaseRun, RerunReason, Verdict};

/// Everything loaded and validated before anything runs.
#[derive(Debug, Clone)]
pub struct Suite {
    pub paths: Paths,
    pub cases: Vec<Case>,
    pub recipes: Vec<Recipe>,
    /// The upstream KVM selftests that any case runs, from every case file
    /// (not only the selected ones), so that a subset reuses the same build.
    pub kselftests: Vec<String>,
}

impl Suite {
    /// Loads every recipe and case; `case_filter`/`kernel_filter` (names)
    /// narrow the pairs to run. Unknown names are errors.
    pub fn load(paths: Paths, case_filter: &[String], kernel_filter: &[String]) -> Result<Suite> {
        let names = kernel::recipe::list(&paths.kernels())?;
        let mut recipes = Vec::new();
        for n in &names {
            recipes.push(Recipe::load_named(&paths.kernels(), n)?);
        }
        let known = case::KnownKernels::new(
            recipes
                .iter()
                .map(|r: &Recipe| (r.name.clone(), r.tags.clone()))
                .collect(),
        );
        let mut cases = case::load_all(&paths.cases(), known)?;
        let mut kselftests: Vec<String> = cases.iter().flat_map(|c| c.kselftests()).collect();
        kselftests.sort();
        kselftests.dedup();
        for c in case_filter {
            if !cases.iter().any(|x| &x.name == c) {
                anyhow::bail!(
                    "no case `{c}` in {} (cases: {})",
                    paths.cases().display(),
                    cases
                        .iter()
                        .map(|x| x.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        for k in kernel_filter {
            if !names.contains(k) {
                anyhow::bail!(
                    "no kernel `{k}` in {} (kernels: {}){}",
                    paths.kernels().display(),
                    names.join(", "),
                    flavor_hint(k)
                );
            }
        }
        if !case_filter.is_empty() {
            cases.retain(|c| case_filter.contains(&c.name));
        }
        if !kernel_filter.is_empty() {
            for c in &mut cases {
                c.kernels.retain(|k| kernel_filter.contains(k));
            }
        }
        // Only the kernels some selected case needs.
        recipes.retain(|r| cases.iter().any(|c| c.kernels.contains(&r.name)));
        let suite = Suite {
            paths,
            cases,
            recipes,
            kselftests,
        };
        // Against the kernels whose source is here already; the others are
        // checked once `prepare` has their source, before any selftest make.
        for r in &suite.recipes {
            if let Some(tree) = known_tree(&suite.paths, r) {
                suite.check_kselftests(r, &tree)?;
            }
        }
        Ok(suite)
    }

    /// Every `kselftest` step of the cases that run on `recipe` names a
    /// test `tree`'s Makefile.kvm builds: the case file and the step's
    /// field are named otherwise, before anything is built.
    pub fn check_kselftests(&self, recipe: &Recipe, tree: &std::path::Path) -> Result<()> {
        let Some(known) = kernel::selftests::tests_in_tree(tree) else {
            return Ok(());
        };
        for c in self
            .cases
            .iter()
            .filter(|c| c.kernels.contains(&recipe.name))
        {
            for (i, s) in c.plan.steps.iter().enumerate() {
                let Some(test) = (s.probe == "kselftest")
                    .then(|| s.args.get("test").and_then(|t| t.as_str()))
                    .flatten()
                else {
                    continue;
                };
                if !known.contains(test) {
                    let near: Vec<&str> = known
                        .iter()
                        .filter(|k| {
                            let (a, b) = (
                                k.rsplit('/').next().unwrap_or(k),
                                test.rsplit('/').next().unwrap_or(test),
                            );
                            a.contains(b)
                                || b.contains(a)
                                || a.split('_').next() == b.split('_').next()
                        })
                        .map(String::as_str)
                        .take(5)
                        .collect();
                    anyhow::bail!(
                        "{}: field `steps[{i}].args.test`: no KVM selftest `{test}` in the x86 lists of {}/tools/testing/selftests/kvm/Makefile.kvm (kernel {}){}",
                        c.file.display(),
                        tree.display(),
                        recipe.name,
                        if near.is_empty() {
                            String::new()
                        } else {
                            format!("; near it: {}", near.join(", "))
                        }
                    );
                }
            }
        }
        Ok(())
    }

    /// One case on one kernel, whether or not the case lists that kernel: a
    /// developer runs any case on the kernel they are working on. Without a
    /// snapshot for the pair, the verdict is "new".
    pub fn load_one(paths: Paths, case: &str, kernel: &str) -> Result<Suite> {
        let names = kernel::recipe::list(&paths.kernels())?;
        if !names.iter().any(|n| n == kernel) {
            anyhow::bail!(
                "no kernel `{kernel}` in {} (kernels: {}){}",
                paths.kernels().display(),
                names.join(", "),
                flavor_hint(kernel)
            );
        }
        let mut suite = Suite::load(paths, &[case.to_string()], &[])?;
        suite.cases[0].kernels = vec![kernel.to_string()];
        suite.recipes = vec![Recipe::load_named(&suite.paths.kernels(), kernel)?];
        Ok(suite)
    }

    /// The same suite on `flavor`'s kernels: every recipe in that flavor
    /// (`VARIANT+FLAVOR`), every case on those kernels with its deadlines
    /// scaled ([`Case::flavored`]). The normal flavor is the suite as it is.
    pub fn flavored(mut self, flavor: Flavor) -> Result<Suite> {
        self.recipes = self
            .recipes
            .iter()
            .map(|r| flavor.apply(r))
            .collect::<Result<_>>()?;
        self.cases = self.cases.iter().map(|c| c.flavored(flavor)).collect();
        Ok(self)
    }

    /// The same suite narrowed to one kernel (for preparing only what one
    /// pair needs).
    pub fn only_kernel(&self, kernel: &str) -> Suite {
        let mut cases = self.cases.clone();
        for c in &mut cases {
            c.kernels.retain(|k| k == kernel);
        }
        cases.retain(|c| !c.kernels.is_empty());
        Suite {
            paths: self.paths.clone(),
            cases,
            recipes: self
                .recipes
                .iter()
                .filter(|r| r.name == kernel)
                .cloned()
                .collect(),
            kselftests: self.kselftests.clone(),
        }
    }

    /// The (case, kernel) pairs, in case order.
    pub fn pairs(&self) -> Vec<(&Case, &str)> {
        self.cases
            .iter()
            .flat_map(|c| c.kernels.iter().map(move |k| (c, k.as_str())))
            .collect()
    }
}

/// For a flavored kernel's name given where a variant is expected (as a
/// run's logs and table show it): how to ask for it.
fn flavor_hint(kernel: &str) -> String {
    match Flavor::of_kernel(kernel) {
        (_, Flavor::Normal) => String::new(),
        (variant, f) => {
            format!("; for the {f} flavor of {variant}: --kernel {variant} --flavor {f}")
        }
    }
}

/// The source tree of `recipe` when it is on this machine already (a
/// Debian source is not fetched for this).
fn known_tree(paths: &Paths, recipe: &Recipe) -> Option<std::path::PathBuf> {
    match &recipe.source {
        kernel::recipe::SourceSpec::Debian { package, version } => {
            crate::setup::cached_source(paths, package, version.as_deref()).map(|t| t.path)
        }
        kernel::recipe::SourceSpec::Tree { tree } => Some(std::path::PathBuf::from(tree)),
        // Archived into the cache on first use: here if already done.
        kernel::recipe::SourceSpec::Git { .. } => None,
    }
}

/// Builds what the runs need: the kernels (or finds them cached), the
/// KVM selftests the selected cases run, the guest binaries and the
/// initramfs base.
pub fn prepare(suite: &Suite) -> Result<Prepared> {
    let mut kernels = Vec::new();
    let mut kselftests = Vec::new();
    for r in &suite.recipes {
        kernels.push(kernel::build(&suite.paths, r)?);
        // The selftests come from the same tree as the kernel, built only
        // for the kernels a selected case runs them on.
        if suite
            .cases
            .iter()
            .any(|c| c.kernels.contains(&r.name) && !c.kselftests().is_empty())
        {
            // The source is here now: the names are checked before make.
            if let Some(tree) = known_tree(&suite.paths, r) {
                suite.check_kselftests(r, &tree)?;
            }
            // User-space programs of the variant's tree: a flavor (the
            // kernel's config) does not change them, so it shares the
            // variant's build.
            let variant = match r.flavor {
                Flavor::Normal => r.clone(),
                _ => Recipe::load(&r.file)?,
            };
            let built = kernel::selftests::build(&suite.paths, &variant, &suite.kselftests)?;
            kselftests.push((r.name.clone(), pack::kselftests_member_cached(&built)?));
        }
    }
    let bins = pack::build_guest_binaries(&suite.paths)?;
    let base_image = pack::base_image(&bins)?;
    let (accel, why) = Accel::detect();
    eprintln!(
        "vm: using {} ({why})",
        match accel {
            Accel::Kvm => "KVM acceleration",
            Accel::Tcg => "TCG (software emulation, -cpu max: nested SVM for the guest)",
        }
    );
    Ok(Prepared {
        kernels,
        bins,
        base_image,
        accel,
        kselftests,
        image_digests: Default::default(),
    })
}
