// class-transformer ships this module's types under types/, not next to its CommonJS file.
declare module 'class-transformer/cjs/storage.js' {
  export { defaultMetadataStorage } from 'class-transformer/types/storage.js';
}
