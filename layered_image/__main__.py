from layered_image.cli import main

raise SystemExit(main())
