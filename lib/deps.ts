/**
 * Every third-party dependency, once, as full npm specifiers with pinned majors: a module
 * imported from a URL does not see this repository's import map (design.md 2).
 */
export { isMap, LineCounter, parseDocument } from "npm:yaml@^2.8.1";
