from framewatch.cli import main

main()
