from ezlink.cli import main

main()
