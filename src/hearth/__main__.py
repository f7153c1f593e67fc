from hearth.cli import main

# Guarded: a worker process started by ``multiprocessing`` (hearth.storage.index_workers)
# imports this module as ``__mp_main__`` and must not run the command again.
if __name__ == "__main__":
    main()
