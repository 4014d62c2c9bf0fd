from librarian.cli.main import main

main()
