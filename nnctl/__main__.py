from nnctl.entry import main

main()
