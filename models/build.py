"""Build a model from the catalog: `python models/build.py [NAME] [--force]`.

Same as `router models build`. The logic lives in `router/modelbuild/`; built files land in
`models/NAME/` (git-ignored).
"""

from router.modelbuild.build import main

if __name__ == "__main__":
    raise SystemExit(main())
