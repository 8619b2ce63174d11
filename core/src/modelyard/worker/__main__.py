from modelyard.worker.main import main

if __name__ == "__main__":  # a library that spawns processes (vLLM) imports this module again in each child
    main()
