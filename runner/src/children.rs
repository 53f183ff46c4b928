//! What the runner starts dies with it. Long-running children (make, QEMU)
//! lead process groups of their own, so that a terminal's Ctrl-C reaches
//! only the runner, which then takes each group down whole (make's
//! compilers with make); and they get SIGKILL should the runner die first.

use std::os::unix::process::CommandExt;

/// Makes `cmd` lead a process group of its own and die with the runner.
pub fn own_group(cmd: &mut std::process::Command) {
    // SAFETY: setpgid and prctl are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Stops every child of this process and, where a child leads its own
/// process group, the whole group: on an interruption, what a blocking
/// step (a kernel build) started must not outlive the runner. SIGTERM
/// first, so that make deletes the targets it was writing (a half-written
/// object with a new mtime would be taken as built next time), then
/// SIGKILL for whatever is left after a grace period.
pub fn kill_all() -> usize {
    kill_children_where(|_| true)
}

/// The children of this process that `pick` selects: (pid, leads its group).
fn children(pick: &impl Fn(i32) -> bool) -> Vec<(i32, bool)> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // The fields after the command name (which may hold spaces).
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (state, ppid, pgrp) = match (f.first(), f.get(1), f.get(2)) {
            (Some(s), Some(p), Some(g)) => (
                *s,
                p.parse::<i32>().unwrap_or(0),
                g.parse::<i32>().unwrap_or(0),
            ),
            _ => continue,
        };
        // A zombie is dead already, waiting for us to reap it.
        if ppid == me && state != "Z" && pick(pid) {
            found.push((pid, pgrp == pid));
        }
    }
    found
}

fn signal(targets: &[(i32, bool)], sig: i32) {
    for &(pid, leader) in targets {
        // SAFETY: signalling our own child, or the group it leads.
        unsafe {
            if leader {
                libc::killpg(pid, sig);
            } else {
                libc::kill(pid, sig);
            }
        }
    }
}

fn kill_children_where(pick: impl Fn(i32) -> bool) -> usize {
    let targets = children(&pick);
    signal(&targets, libc::SIGTERM);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline && !children(&pick).is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The groups whatever their leaders did: a leader gone on SIGTERM may
    // leave members behind.
    signal(&targets, libc::SIGKILL);
    targets.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_and_its_group_are_killed() {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new("sh");
        // A grandchild in the same group: killed through the group.
        cmd.args(["-c", "sleep 60 & echo $!; sleep 60"])
            .stdout(std::process::Stdio::piped());
        own_group(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        let me = child.id() as i32;
        // Only this test's child: the test binary runs others beside it.
        assert_eq!(kill_children_where(|pid| pid == me), 1);
        assert!(!child.wait().unwrap().success());
        // The grandchild is gone, or a zombie waiting for its reaper.
        let dead = || {
            std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
                .unwrap_or(true)
        };
        for _ in 0..50 {
            if dead() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("the grandchild {grandchild} survived its group's kill");
    }
}
