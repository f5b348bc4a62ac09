from stillreel.cli import main

main()
