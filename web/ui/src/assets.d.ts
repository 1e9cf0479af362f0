// esbuild bundles stylesheets imported from TypeScript into the entry's .css file.
declare module "*.css";
