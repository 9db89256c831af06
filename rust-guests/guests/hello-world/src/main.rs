//! Prints `Hello, World!` once a second, forever (like Krustlet's hello-world
//! example). With an argument N it prints N lines, 1 s apart, and exits 0.
use std::io::Write;
use std::process::exit;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let count: Option<u64> = match args.next() {
        None => None,
        Some(a) => match a.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                eprintln!("hello-world: invalid count {:?} (usage: hello-world [N])", a);
                exit(2);
            }
        },
    };
    if args.next().is_some() {
        eprintln!("hello-world: too many arguments (usage: hello-world [N])");
        exit(2);
    }
    let stdout = std::io::stdout();
    let mut i: u64 = 0;
    loop {
        if let Some(n) = count {
            if i >= n {
                break;
            }
        }
        if i > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let mut out = stdout.lock();
        if out.write_all(b"Hello, World!\n").and_then(|_| out.flush()).is_err() {
            exit(1);
        }
        i += 1;
    }
}
