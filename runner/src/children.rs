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

/// Kills every child of this process and, where a child leads its own
/// process group, the whole group: on an interruption, what a blocking
/// step (a kernel build) started must not outlive the runner.
pub fn kill_all() -> usize {
    kill_children_where(|_| true)
}

fn kill_children_where(pick: impl Fn(i32) -> bool) -> usize {
    let me = std::process::id() as i32;
    let mut killed = 0;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
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
        let (ppid, pgrp) = match (f.get(1), f.get(2)) {
            (Some(p), Some(g)) => (p.parse::<i32>().unwrap_or(0), g.parse::<i32>().unwrap_or(0)),
            _ => continue,
        };
        if ppid != me || !pick(pid) {
            continue;
        }
        // SAFETY: signalling our own child, or the group it leads.
        unsafe {
            if pgrp == pid {
                libc::killpg(pid, libc::SIGKILL);
            } else {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        killed += 1;
    }
    killed
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
