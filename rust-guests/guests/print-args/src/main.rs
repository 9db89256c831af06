//! Prints its argv, one `argv[i]=value` line per argument (argv[0] included), so tests
//! can see exactly what the host passed.

fn main() {
    for (i, arg) in std::env::args().enumerate() {
        println!("argv[{}]={}", i, arg);
    }
}
