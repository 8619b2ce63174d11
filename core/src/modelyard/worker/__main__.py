from modelyard.worker.main import main

main()
