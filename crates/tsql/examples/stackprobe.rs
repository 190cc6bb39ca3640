fn main() {
    let which = std::env::args().nth(1).unwrap();
    let n: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let src = match which.as_str() {
        "parens" => format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        "chain" => format!("SELECT 1{}", " + 1".repeat(n)),
        "if" => "IF 1=1 ".repeat(n) + "PRINT 1",
        "neg" => format!("SELECT {}1", "-".repeat(n)),
        "sub" => format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n)),
        "begin" => format!("{}PRINT 1{}", "BEGIN ".repeat(n), " END".repeat(n)),
        _ => panic!(),
    };
    let r = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let r = tsql::parse_batch(&src);
            match &r {
                Ok(s) => {
                    println!("parsed");
                    if std::env::var("TR").is_ok() {
                        let _ = tsql::translate(&s[0], &tsql::translate::NoCatalog);
                    }
                    println!("ok");
                }
                Err(e) => println!("err {}", e.number),
            }
        })
        .unwrap()
        .join();
    println!("{:?}", r.is_ok());
}
