from hearth.cli import main

# Guarded, as a main module should be: importing it (``runpy``, a tool that inspects
# ``hearth.__main__``) must not run a command.
if __name__ == "__main__":
    main()
