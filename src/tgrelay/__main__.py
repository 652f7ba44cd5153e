from tgrelay.cli import main

main()
