//! `exit-code N`: exits with status N through `proc_exit`. Prints nothing
//! (a usage error goes to stderr with status 2).
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(|a| a.parse::<i32>()) {
        Some(Ok(n)) if args.len() == 2 => n,
        _ => {
            eprintln!("usage: exit-code N");
            std::process::exit(2);
        }
    };
    std::process::exit(code);
}
